//! The PostgreSQL writer: like the SQLite one, it commits whatever callbacks are queued as
//! one transaction (group commit). Replicas write concurrently, so each transaction first
//! takes a transaction-scoped advisory lock: sequences are then assigned in commit order,
//! without gaps, across all replicas — which WatchEvents relies on.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::lock::{Bounded, TAKE_APPEND_LOCK, under_lock};
use super::rows::{self, RECORDING_COLUMNS};
use crate::domain::time::to_micros;
use crate::domain::{Callback, EventType, Recording};
use crate::error::{Chain, Error};
use crate::store::queue::Job;
use crate::store::{Appended, NewEvent};

/// Most callbacks in one transaction.
const MAX_BATCH: usize = 512;
/// The channel replicas announce commits on.
pub const CHANNEL: &str = "recording_events";

/// The newest sequence handed out (0 when none), never below what retention removed:
/// sequences are not reused.
pub const LAST_SEQUENCE: &str = "SELECT greatest(coalesce(max(sequence), 0), \
     coalesce((SELECT value - 1 FROM meta WHERE key = 'first_kept'), 0)) FROM events";

/// Runs until every sender of `rx` is gone.
pub async fn run(pool: Pool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let queue_wait = metrics::histogram!("recording_events_store_queue_seconds");
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        for job in &batch {
            queue_wait.record(started.duration_since(job.queued_at).as_secs_f64());
        }
        let outcomes = match commit(&pool, &batch).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(failed) if batch.len() == 1 => vec![Err(failed.error)],
            // The database refused the batch: one callback may be the cause, so each is
            // tried alone and the others still go in.
            Err(failed) if failed.refused => {
                tracing::warn!(error = %failed.error, jobs = batch.len(), "batch commit failed, retrying one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for job in &batch {
                    outcomes.push(
                        commit(&pool, std::slice::from_ref(job))
                            .await
                            .map(|mut one| one.remove(0))
                            .map_err(|failed| failed.error),
                    );
                }
                outcomes
            }
            // Not reached (connection lost, timed out): alone, each would wait for the
            // same failure in turn. All are answered now, to be sent again.
            Err(failed) => {
                let cause = Chain(&failed.error).to_string();
                tracing::warn!(error = %cause, jobs = batch.len(), "batch commit failed: the database was not reached");
                let mut outcomes = vec![Err(failed.error)];
                outcomes.extend(
                    (1..batch.len())
                        .map(|_| Err(Error::store(std::io::Error::other(cause.clone())))),
                );
                outcomes
            }
        };
        metrics::histogram!("recording_events_store_batch_size").record(batch.len() as f64);
        metrics::histogram!("recording_events_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job.done.send(outcome);
        }
    }
    tracing::debug!("postgres writer stopped");
}

/// A commit that failed, and whether the database refused it (an SQL error, which one
/// callback of the batch may have caused) rather than not being reached.
struct Failed {
    error: Error,
    refused: bool,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE classes of a database that is going away or full (connection
        // exception, insufficient resources, operator intervention such as a shutdown).
        // And a session ended for sitting idle in its transaction (25P03).
        let unavailable =
            |code: &str| code == "25P03" || ["08", "53", "57"].iter().any(|c| code.starts_with(c));
        Failed {
            refused: e
                .as_db_error()
                .is_some_and(|db| !unavailable(db.code().code())),
            error: Error::store(e),
        }
    }
}

async fn commit(pool: &Pool, jobs: &[Job]) -> Result<Vec<Appended>, Failed> {
    let client = pool.get().await.map_err(|e| Failed {
        error: Error::store(e),
        refused: false,
    })?;
    let outcome = under_lock(client, async |client| {
        let tx = client.transaction().await?;
        let outcomes = append_all(&tx, jobs).await?;
        tx.commit().await?;
        Ok(outcomes)
    })
    .await;
    // Timed out: had the commit landed after all, the senders' retries are found as
    // duplicates.
    outcome.map_err(|e| match e {
        Bounded::Failed(e) => Failed::from(e),
        timed_out => Failed {
            error: Error::store(timed_out),
            refused: false,
        },
    })
}

/// Appends a batch with a handful of round trips, whatever its size: one query each to
/// find duplicates, load the recordings and the finished tasks involved; the fold in
/// memory (in order, so later callbacks of the batch see earlier ones); then all writes
/// pipelined on the connection.
async fn append_all(
    tx: &Transaction<'_>,
    jobs: &[Job],
) -> Result<Vec<Appended>, tokio_postgres::Error> {
    tx.batch_execute(&TAKE_APPEND_LOCK).await?;
    let mut next: i64 = tx.query_one(LAST_SEQUENCE, &[]).await?.get::<_, i64>(0) + 1;
    let callbacks: Vec<&Callback> = jobs.iter().map(|j| &j.event.callback).collect();
    let fingerprints: Vec<[u8; 32]> = jobs.iter().map(|j| j.event.fingerprint).collect();

    // What is already stored (a callback that names no occurrence is also the one
    // received the day before).
    let fp_refs: Vec<&[u8]> = fingerprints
        .iter()
        .chain(jobs.iter().filter_map(|j| j.event.day_before.as_ref()))
        .map(|f| &f[..])
        .collect();
    let mut known: HashMap<[u8; 32], (i64, Option<String>)> = HashMap::new();
    for row in tx
        .query(
            "SELECT fingerprint, sequence, recording_id FROM events WHERE fingerprint = ANY($1)",
            &[&fp_refs],
        )
        .await?
    {
        let fp: &[u8] = row.get(0);
        if let Ok(fp) = <[u8; 32]>::try_from(fp) {
            known.insert(fp, (row.get(1), row.get(2)));
        }
    }
    let ids: Vec<&String> = jobs
        .iter()
        .filter_map(|j| j.event.recording_id.as_ref())
        .collect();
    let mut recordings: HashMap<String, Recording> = HashMap::new();
    let load = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ANY($1)");
    for row in tx.query(&load, &[&ids]).await? {
        let rec = rows::recording(&row);
        recordings.insert(rec.id.clone(), rec);
    }
    let (projects, tasks): (Vec<&str>, Vec<&str>) = callbacks
        .iter()
        .filter(|cb| !cb.task_id.is_empty())
        .map(|cb| (cb.project_id.as_str(), cb.task_id.as_str()))
        .unzip();
    let mut over: HashSet<(String, String)> = HashSet::new();
    for row in tx
        .query(
            "SELECT t.project_id, t.task_id FROM tasks_over t \
             JOIN unnest($1::text[], $2::text[]) AS k(project_id, task_id) \
               ON t.project_id = k.project_id AND t.task_id = k.task_id",
            &[&projects, &tasks],
        )
        .await?
    {
        over.insert((row.get(0), row.get(1)));
    }

    // The fold, in order.
    let mut outcomes = Vec::with_capacity(jobs.len());
    // (sequence, index in the batch, the recording it changed and its state after)
    let mut events: Vec<(i64, usize, Option<RecordingRef>)> = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    let mut newly_over: Vec<(String, String, i64)> = Vec::new();
    let mut max_span = 0i64;
    for (i, cb) in callbacks.iter().enumerate() {
        let original = std::iter::once(&fingerprints[i])
            .chain(&jobs[i].event.day_before)
            .find_map(|fp| known.get(fp));
        if let Some((sequence, recording_id)) = original {
            outcomes.push(Appended {
                sequence: *sequence,
                duplicate: true,
                recording_id: recording_id.clone(),
            });
            continue;
        }
        let sequence = next;
        next += 1;
        let now = jobs[i].event.received_at;
        let mut recording = None;
        if cb.event_type == EventType::RecordOver {
            if !cb.task_id.is_empty() && over.insert((cb.project_id.clone(), cb.task_id.clone())) {
                newly_over.push((cb.project_id.clone(), cb.task_id.clone(), sequence));
                let open = format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings \
                     WHERE project_id = $1 AND task_id = $2 AND NOT task_over"
                );
                for row in tx.query(&open, &[&cb.project_id, &cb.task_id]).await? {
                    let rec = rows::recording(&row);
                    recordings.entry(rec.id.clone()).or_insert(rec);
                }
                for rec in recordings
                    .values_mut()
                    .filter(|r| r.project_id == cb.project_id && r.task_id == cb.task_id)
                {
                    if rec.close_task(sequence, now) && !changed.contains(&rec.id) {
                        changed.push(rec.id.clone());
                    }
                }
            }
        } else if let Some(id) = &jobs[i].event.recording_id {
            let existing = recordings.remove(id);
            let task_over = over.contains(&(cb.project_id.clone(), cb.task_id.clone()));
            if let Some(rec) = Recording::apply(existing, cb, id, task_over, sequence, now) {
                if let (Some(start), Some(end)) = (rec.start_time, rec.end_time) {
                    max_span = max_span.max(to_micros(end) - to_micros(start));
                }
                recording = Some((rec.id.clone(), rec.state as i32));
                if !changed.contains(&rec.id) {
                    changed.push(rec.id.clone());
                }
                recordings.insert(id.clone(), rec);
            }
        }
        known.insert(
            fingerprints[i],
            (sequence, recording.as_ref().map(|(id, _)| id.clone())),
        );
        outcomes.push(Appended {
            sequence,
            duplicate: false,
            recording_id: recording.as_ref().map(|(id, _)| id.clone()),
        });
        events.push((sequence, i, recording));
    }
    if events.is_empty() {
        return Ok(outcomes);
    }

    // The writes, pipelined: every statement is sent before the first reply is awaited.
    let remember = tx
        .prepare_cached(
            "INSERT INTO tasks_over (project_id, task_id, sequence) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let insert = tx.prepare_cached(&rows::INSERT_EVENT).await?;
    let save = tx.prepare_cached(&rows::SAVE_RECORDING).await?;
    let mut writes = Vec::new();
    for (project, task, sequence) in &newly_over {
        let remember = &remember;
        writes.push(
            Box::pin(async move { tx.execute(remember, &[project, task, sequence]).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>>,
        );
    }
    for id in &changed {
        let rec = &recordings[id];
        let save = &save;
        writes.push(Box::pin(async move {
            rows::save_recording_with(tx, save, rec).await
        }));
    }
    for (sequence, i, recording) in &events {
        let insert = &insert;
        let ev = &jobs[*i].event;
        let fingerprint = &fingerprints[*i];
        writes.push(Box::pin(async move {
            insert_event(tx, insert, *sequence, fingerprint, ev, recording.as_ref()).await
        }));
    }
    futures_util::future::try_join_all(writes).await?;
    // `meta.max_span_us`, the longest span of any file, bounded FindRecordings before
    // `stream_spans` (kept by a trigger) did: still kept for replicas of the previous
    // version reading it, during a rolling upgrade or after a rollback.
    if max_span > 0 {
        tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'max_span_us' AND value < $1",
            &[&max_span],
        )
        .await?;
    }
    // Delivered at commit to every replica's listener (see `listen`), naming the table
    // written: deployments in other schemas of the database listen on the same channel.
    tx.execute(
        "SELECT pg_notify($1, 'events'::regclass::oid::text)",
        &[&CHANNEL],
    )
    .await?;
    Ok(outcomes)
}

/// A recording's id and its state right after an event.
type RecordingRef = (String, i32);

async fn insert_event(
    tx: &Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    sequence: i64,
    fingerprint: &[u8; 32],
    ev: &NewEvent,
    recording: Option<&RecordingRef>,
) -> Result<u64, tokio_postgres::Error> {
    let cb = &ev.callback;
    let event_type = cb.event_type.as_str();
    let received = to_micros(ev.received_at);
    let (start, end) = (cb.start_time.map(to_micros), cb.end_time.map(to_micros));
    let recording_id = recording.map(|(id, _)| id.as_str());
    let recording_state = recording.map(|(_, state)| *state);
    let fingerprint = &fingerprint[..];
    let params: [&(dyn ToSql + Sync); 28] = [
        &sequence,
        &fingerprint,
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
    tx.execute(stmt, &params).await
}
