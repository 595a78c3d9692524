//! The PostgreSQL writer: like the SQLite one, it commits whatever callbacks are queued as
//! one transaction (group commit). Replicas write concurrently, so each transaction first
//! takes a transaction-scoped advisory lock: sequences are then assigned in commit order,
//! without gaps, across all replicas — which WatchEvents relies on.

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::rows::{self, RECORDING_COLUMNS};
use crate::domain::recording::id_for;
use crate::domain::time::to_micros;
use crate::domain::{EventType, Recording};
use crate::error::Error;
use crate::store::{Appended, NewEvent};

/// Most callbacks in one transaction.
const MAX_BATCH: usize = 512;
/// The advisory lock that serializes appends (any constant shared by all replicas).
pub const APPEND_LOCK: i64 = 0x7265_635f_6576_7473;
/// The channel replicas announce commits on.
pub const CHANNEL: &str = "recording_events";

/// One queued append and where to send its outcome.
pub struct Job {
    pub event: NewEvent,
    pub done: oneshot::Sender<Result<Appended, Error>>,
}

/// Runs until every sender of `rx` is gone.
pub async fn run(pool: Pool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcomes = match commit(&pool, &batch).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "batch commit failed, retrying one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for job in &batch {
                    outcomes.push(
                        commit(&pool, std::slice::from_ref(job))
                            .await
                            .map(|mut one| one.remove(0)),
                    );
                }
                outcomes
            }
        };
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job.done.send(outcome);
        }
    }
    tracing::debug!("postgres writer stopped");
}

async fn commit(pool: &Pool, jobs: &[Job]) -> Result<Vec<Appended>, Error> {
    let mut client = pool.get().await.map_err(Error::store)?;
    let tx = client.transaction().await.map_err(Error::store)?;
    let outcomes = append_all(&tx, jobs).await.map_err(Error::store)?;
    tx.commit().await.map_err(Error::store)?;
    Ok(outcomes)
}

async fn append_all(
    tx: &Transaction<'_>,
    jobs: &[Job],
) -> Result<Vec<Appended>, tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await?;
    let mut next: i64 = tx
        .query_one("SELECT coalesce(max(sequence), 0) + 1 FROM events", &[])
        .await?
        .get(0);
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut stored_any = false;
    for job in jobs {
        let appended = append(tx, &job.event, &mut next).await?;
        stored_any |= !appended.duplicate;
        outcomes.push(appended);
    }
    if stored_any {
        // Delivered at commit to every replica's listener (see `listen`).
        tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
    }
    Ok(outcomes)
}

const INSERT_EVENT: &str = "INSERT INTO events (sequence, fingerprint, received_at, \
    event_type, project_id, publish_domain, app, stream, record_format, task_id, job_id, \
    download_url, asset_id, play_url, file_size, record_duration, start_time, end_time, width, \
    height, obs_location, obs_bucket, obs_object, auth_sign, auth_timestamp, recording_id, \
    recording_state, raw_body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
    $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)";

async fn append(
    tx: &Transaction<'_>,
    ev: &NewEvent,
    next: &mut i64,
) -> Result<Appended, tokio_postgres::Error> {
    let cb = &ev.callback;
    let fingerprint = cb.fingerprint();
    let lookup = tx
        .prepare_cached("SELECT sequence, recording_id FROM events WHERE fingerprint = $1")
        .await?;
    if let Some(row) = tx.query_opt(&lookup, &[&&fingerprint[..]]).await? {
        return Ok(Appended {
            sequence: row.get(0),
            duplicate: true,
            recording_id: row.get(1),
        });
    }

    let sequence = *next;
    let now = ev.received_at;
    let recording = if cb.event_type == EventType::RecordOver {
        close_task(tx, &cb.project_id, &cb.task_id, sequence, now).await?;
        None
    } else if let Some(id) = id_for(cb) {
        let load = tx
            .prepare_cached(&format!(
                "SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1"
            ))
            .await?;
        let existing = tx
            .query_opt(&load, &[&id])
            .await?
            .map(|r| rows::recording(&r));
        let task_over = !cb.task_id.is_empty() && {
            let over = tx
                .prepare_cached("SELECT 1 FROM tasks_over WHERE project_id = $1 AND task_id = $2")
                .await?;
            tx.query_opt(&over, &[&cb.project_id, &cb.task_id])
                .await?
                .is_some()
        };
        let folded = Recording::apply(existing, cb, task_over, sequence, now);
        if let Some(rec) = &folded {
            rows::save_recording(tx, rec).await?;
            if let (Some(start), Some(end)) = (rec.start_time, rec.end_time) {
                let span = to_micros(end) - to_micros(start);
                let widen = tx
                    .prepare_cached(
                        "UPDATE meta SET value = $1 WHERE key = 'max_span_us' AND value < $1",
                    )
                    .await?;
                tx.execute(&widen, &[&span]).await?;
            }
        }
        folded
    } else {
        None
    };

    let insert = tx.prepare_cached(INSERT_EVENT).await?;
    let event_type = cb.event_type.as_str();
    let received = to_micros(ev.received_at);
    let (start, end) = (cb.start_time.map(to_micros), cb.end_time.map(to_micros));
    let recording_id = recording.as_ref().map(|r| r.id.as_str());
    let recording_state = recording.as_ref().map(|r| r.state as i32);
    let params: [&(dyn ToSql + Sync); 28] = [
        &sequence,
        &&fingerprint[..],
        &received,
        &event_type,
        &cb.project_id,
        &cb.publish_domain,
        &cb.app,
        &cb.stream,
        &cb.record_format,
        &cb.task_id,
        &cb.job_id,
        &cb.download_url,
        &cb.asset_id,
        &cb.play_url,
        &cb.file_size,
        &cb.record_duration,
        &start,
        &end,
        &cb.width,
        &cb.height,
        &cb.obs_location,
        &cb.obs_bucket,
        &cb.obs_object,
        &cb.auth_sign,
        &cb.auth_timestamp,
        &recording_id,
        &recording_state,
        &ev.raw_body,
    ];
    tx.execute(&insert, &params).await?;
    *next += 1;

    Ok(Appended {
        sequence,
        duplicate: false,
        recording_id: recording.map(|r| r.id),
    })
}

async fn close_task(
    tx: &Transaction<'_>,
    project_id: &str,
    task_id: &str,
    sequence: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), tokio_postgres::Error> {
    if task_id.is_empty() {
        return Ok(());
    }
    let remember = tx
        .prepare_cached("INSERT INTO tasks_over (project_id, task_id, sequence) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .await?;
    tx.execute(&remember, &[&project_id, &task_id, &sequence])
        .await?;
    let open = tx
        .prepare_cached(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings \
             WHERE project_id = $1 AND task_id = $2 AND task_id <> '' AND NOT task_over"
        ))
        .await?;
    for row in tx.query(&open, &[&project_id, &task_id]).await? {
        let mut rec = rows::recording(&row);
        if rec.close_task(sequence, now) {
            rows::save_recording(tx, &rec).await?;
        }
    }
    Ok(())
}
