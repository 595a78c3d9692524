//! The single writer: it owns the only writing connection and commits whatever callbacks
//! are queued as one transaction, so one fsync acknowledges a whole burst (group commit).
//! Each request waits on a oneshot for the commit that holds it; nothing is acknowledged
//! before its transaction is durable (WAL, `synchronous=FULL`).
//!
//! Why a std thread and not a task: SQLite calls block, and a dedicated thread keeps them
//! off the async runtime without spawn_blocking's per-call hand-off.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::rows::{RECORDING_COLUMNS, load_recording, recording, save_recording};
use crate::domain::time::to_micros;
use crate::domain::{EventType, Recording, recording::id_for};
use crate::error::Error;
use crate::store::{Appended, NewEvent, StoredEvent};

/// Most callbacks in one transaction: bounds the latency a batch adds to its first member.
const MAX_BATCH: usize = 512;

/// One queued append and where to send its outcome.
pub struct Job {
    pub event: NewEvent,
    pub done: oneshot::Sender<Result<Appended, Error>>,
}

type Outcome = Result<(Appended, Option<StoredEvent>), Error>;

/// Runs until every sender of `rx` is gone, then returns (after answering all jobs).
pub fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    notify: broadcast::Sender<Arc<StoredEvent>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match write(&mut conn, &batch) {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    if let Ok((_, Some(event))) = &outcome {
                        // Sent in commit order, which is sequence order: watchers rely on it.
                        let _ = notify.send(Arc::new(event.clone()));
                    }
                    let _ = job.done.send(outcome.map(|(appended, _)| appended));
                }
            }
            Err(e) => {
                let cause = e.to_string();
                for job in batch.drain(..) {
                    let cause = std::io::Error::other(format!("commit failed: {cause}"));
                    let _ = job.done.send(Err(Error::store(cause)));
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Writes a batch in one transaction. Each job runs in its own savepoint, so a job that
/// fails leaves no partial rows and does not fail the others.
fn write(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<Outcome>> {
    let mut tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let sp = tx.savepoint()?;
        match append(&sp, &job.event) {
            Ok(outcome) => {
                sp.commit()?;
                outcomes.push(Ok(outcome));
            }
            Err(e) => outcomes.push(Err(Error::store(e))),
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

const INSERT_EVENT: &str = "INSERT INTO events (fingerprint, received_at, event_type, \
    project_id, publish_domain, app, stream, record_format, task_id, job_id, download_url, \
    asset_id, play_url, file_size, record_duration, start_time, end_time, width, height, \
    obs_location, obs_bucket, obs_object, auth_sign, auth_timestamp, raw_body) VALUES \
    (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
     ?20, ?21, ?22, ?23, ?24, ?25) ON CONFLICT (fingerprint) DO NOTHING RETURNING sequence";

fn append(conn: &Connection, ev: &NewEvent) -> rusqlite::Result<(Appended, Option<StoredEvent>)> {
    let cb = &ev.callback;
    let fingerprint = cb.fingerprint();
    let inserted: Option<i64> = conn
        .prepare_cached(INSERT_EVENT)?
        .query_row(
            params![
                &fingerprint[..],
                to_micros(ev.received_at),
                cb.event_type.as_str(),
                cb.project_id,
                cb.publish_domain,
                cb.app,
                cb.stream,
                cb.record_format,
                cb.task_id,
                cb.job_id,
                cb.download_url,
                cb.asset_id,
                cb.play_url,
                cb.file_size,
                cb.record_duration,
                cb.start_time.map(to_micros),
                cb.end_time.map(to_micros),
                cb.width,
                cb.height,
                cb.obs_location,
                cb.obs_bucket,
                cb.obs_object,
                cb.auth_sign,
                cb.auth_timestamp,
                ev.raw_body,
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(sequence) = inserted else {
        let (sequence, recording_id) = conn
            .prepare_cached("SELECT sequence, recording_id FROM events WHERE fingerprint = ?1")?
            .query_row([&fingerprint[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let appended = Appended {
            sequence,
            duplicate: true,
            recording_id,
        };
        return Ok((appended, None));
    };

    let now = ev.received_at;
    let recording = if cb.event_type == EventType::RecordOver {
        close_task(conn, &cb.project_id, &cb.task_id, sequence, now)?;
        None
    } else if let Some(id) = id_for(cb) {
        let existing = load_recording(conn, &id)?;
        let task_over = !cb.task_id.is_empty() && task_is_over(conn, &cb.project_id, &cb.task_id)?;
        let folded = Recording::apply(existing, cb, task_over, sequence, now);
        if let Some(rec) = &folded {
            save_recording(conn, rec)?;
            widen_max_span(conn, rec)?;
            let snapshot = serde_json::to_string(rec)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            conn.prepare_cached(
                "UPDATE events SET recording_id = ?1, recording = ?2 WHERE sequence = ?3",
            )?
            .execute(params![rec.id, snapshot, sequence])?;
        }
        folded
    } else {
        None
    };

    let appended = Appended {
        sequence,
        duplicate: false,
        recording_id: recording.as_ref().map(|r| r.id.clone()),
    };
    let stored = StoredEvent {
        sequence,
        callback: cb.clone(),
        received_at: now,
        recording,
    };
    Ok((appended, Some(stored)))
}

fn task_is_over(conn: &Connection, project_id: &str, task_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM tasks_over WHERE project_id = ?1 AND task_id = ?2")?
        .exists([project_id, task_id])
}

/// RECORD_OVER: remembers the task as over and ends its files still recording.
fn close_task(
    conn: &Connection,
    project_id: &str,
    task_id: &str,
    sequence: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<()> {
    if task_id.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO tasks_over (project_id, task_id, sequence) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![project_id, task_id, sequence])?;
    let open: Vec<Recording> = conn
        .prepare_cached(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings \
             WHERE project_id = ?1 AND task_id = ?2 AND task_id <> '' AND task_over = 0"
        ))?
        .query_map([project_id, task_id], recording)?
        .collect::<Result<_, _>>()?;
    for mut rec in open {
        if rec.close_task(sequence, now) {
            save_recording(conn, &rec)?;
        }
    }
    Ok(())
}

/// Keeps `max_span_us`, the longest [start, end) of any recording, which bounds how far
/// back FindRecordings must look for a file covering an instant.
fn widen_max_span(conn: &Connection, rec: &Recording) -> rusqlite::Result<()> {
    if let (Some(start), Some(end)) = (rec.start_time, rec.end_time) {
        let span = to_micros(end) - to_micros(start);
        conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'max_span_us' AND value < ?1")?
            .execute([span])?;
    }
    Ok(())
}
