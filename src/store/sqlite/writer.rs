//! The single writer: it owns the only writing connection and commits whatever callbacks
//! are queued as one transaction, so one fsync acknowledges a whole burst (group commit).
//! Each request waits on a oneshot for the commit that holds it; nothing is acknowledged
//! before its transaction is durable (WAL, `synchronous=FULL`).
//!
//! Why a std thread and not a task: SQLite calls block, and a dedicated thread keeps them
//! off the async runtime without spawn_blocking's per-call hand-off. Checkpoints run on
//! another thread (see `mod.rs`), off this one's critical path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::prune;
use super::rows::{
    INSERT_EVENT, LOAD_RECORDING, RECORDING_COLUMNS, SAVE_RECORDING, last_sequence, recording,
    save_recording, save_recording_with,
};
use crate::domain::time::to_micros;
use crate::domain::{EventType, Recording};
use crate::error::Error;
use crate::store::queue::Job;
use crate::store::{Appended, Ended, NewEvent, Pruned, StoredEvent};

/// Most callbacks in one transaction: bounds the latency a batch adds to its first member.
const MAX_BATCH: usize = 512;

/// What the writer thread is asked to do, in queue order.
// Nearly every item is an append: boxing it would cost an allocation per callback to make
// the rare removal request smaller.
#[allow(clippy::large_enum_variant)]
pub enum Work {
    /// Store a callback (batched with the others queued).
    Append(Job),
    /// One retention transaction ([`prune::prune_chunk`]), between two batches.
    Prune {
        /// Events received before this (µs since the epoch) are due.
        before_us: i64,
        done: oneshot::Sender<rusqlite::Result<Pruned>>,
    },
}

/// A job's answer and, when its event is new (not a duplicate), what to announce.
type Outcome = Result<(Appended, Option<Fresh>), Error>;

/// A newly stored event's recording snapshot (if it is about a file); the rest of the
/// announcement is the job's own callback, moved, not copied, once the batch is durable.
struct Fresh {
    recording: Option<Recording>,
    /// The files a RECORD_OVER ended.
    ended: Ended,
}

/// The statements of the hot path, prepared once per batch instead of looked up in the
/// statement cache (which hashes the SQL text) once per event.
struct Statements<'c> {
    load_recording: CachedStatement<'c>,
    find_duplicate: CachedStatement<'c>,
    save_recording: CachedStatement<'c>,
    insert_event: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            load_recording: conn.prepare_cached(&LOAD_RECORDING)?,
            find_duplicate: conn.prepare_cached(
                "SELECT sequence, recording_id FROM events \
                 WHERE dedup_group = ?1 AND fingerprint = ?2",
            )?,
            save_recording: conn.prepare_cached(&SAVE_RECORDING)?,
            insert_event: conn.prepare_cached(INSERT_EVENT)?,
        })
    }
}

/// Runs until every sender of `rx` is gone, then returns (after answering all jobs).
///
/// # Errors
/// When the next sequence number cannot be read at start.
pub fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Work>,
    notify: broadcast::Sender<Arc<StoredEvent>>,
    rewind: &AtomicBool,
) -> rusqlite::Result<()> {
    let mut writer = Writer::new(conn)?;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let queue_wait = metrics::histogram!("recording_events_store_queue_seconds");
    while let Some(work) = rx.blocking_recv() {
        // A removal queued behind this batch runs right after it: queue order is kept.
        let mut then_prune = None;
        match work {
            Work::Append(job) => batch.push(job),
            Work::Prune { before_us, done } => {
                let _ = done.send(prune::prune_chunk(&mut writer.conn, before_us));
                continue;
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Work::Append(job)) => batch.push(job),
                Ok(Work::Prune { before_us, done }) => {
                    then_prune = Some((before_us, done));
                    break;
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        for job in &batch {
            queue_wait.record(started.duration_since(job.queued_at).as_secs_f64());
        }
        let outcomes = writer.write_batch(&batch);
        metrics::histogram!("recording_events_store_batch_size").record(batch.len() as f64);
        metrics::histogram!("recording_events_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let appended = outcome.map(|(appended, fresh)| {
                // Sent in commit order, which is sequence order: watchers rely on it.
                if let Some(Fresh { recording, ended }) = fresh
                    && notify.receiver_count() > 0
                {
                    let _ = notify.send(Arc::new(StoredEvent {
                        sequence: appended.sequence,
                        callback: job.event.callback,
                        received_at: job.event.received_at,
                        recording,
                        ended,
                    }));
                }
                appended
            });
            let _ = job.done.send(appended);
        }
        if let Some((before_us, done)) = then_prune {
            let _ = done.send(prune::prune_chunk(&mut writer.conn, before_us));
        }
        if rewind.swap(false, Ordering::Relaxed) {
            writer.finish_rewind();
        }
    }
    tracing::debug!("store writer stopped");
    Ok(())
}

/// The writing connection and the next sequence to hand out. Only this thread writes, so
/// the sequence can be assigned before the insert: the event row is written once, with
/// the recording snapshot the fold produced.
struct Writer {
    conn: Connection,
    marks: Marks,
    spans: Spans,
}

/// What the writer keeps in memory of the store: restored when a transaction rolls back.
#[derive(Debug, Clone, Copy)]
struct Marks {
    /// The sequence the next event gets.
    next_sequence: i64,
    /// `meta.max_span_us`: the longest [start, end) of any recording.
    max_span_us: i64,
}

impl Writer {
    fn new(conn: Connection) -> rusqlite::Result<Self> {
        let mut writer = Writer {
            conn,
            marks: Marks {
                next_sequence: 0,
                max_span_us: 0,
            },
            spans: Spans::default(),
        };
        writer.reload_sequence()?;
        Ok(writer)
    }

    /// AUTOINCREMENT's high-water mark: sequences are never reused, even after deletes.
    fn reload_sequence(&mut self) -> rusqlite::Result<()> {
        self.marks.next_sequence = last_sequence(&self.conn)? + 1;
        self.marks.max_span_us = self.conn.query_row(
            "SELECT value FROM meta WHERE key = 'max_span_us'",
            [],
            |r| r.get(0),
        )?;
        Ok(())
    }

    /// Copies the last WAL frames back (the checkpoint thread has copied the others), so
    /// that the next transaction starts the WAL over. Between batches, after their
    /// answers; busy (another checkpoint running) is fine: the next request will retry.
    fn finish_rewind(&mut self) {
        let started = std::time::Instant::now();
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::debug!(error = %e, "wal rewind checkpoint failed");
        }
        metrics::histogram!("recording_events_store_rewind_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// Commits a batch as one transaction (one fsync). Should anything fail, the
    /// transaction is rolled back and each job is retried alone, so one bad job cannot
    /// fail the others and none is half-written. (Per-job savepoints would give the same
    /// isolation, but their statement journal doubled the cost of every write.)
    fn write_batch(&mut self, batch: &[Job]) -> Vec<Outcome> {
        match self.commit(batch) {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(Error::store(e))],
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "batch commit failed, retrying one by one");
                batch
                    .iter()
                    .map(|job| {
                        self.commit(std::slice::from_ref(job))
                            .map(|mut one| one.remove(0))
                            .map_err(Error::store)
                    })
                    .collect()
            }
        }
    }

    fn commit(&mut self, jobs: &[Job]) -> rusqlite::Result<Vec<(Appended, Option<Fresh>)>> {
        let before = self.marks;
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(jobs.len());
            {
                let mut statements = Statements::prepare(&tx)?;
                for job in jobs {
                    outcomes.push(append(
                        &tx,
                        &mut statements,
                        &job.event,
                        &mut self.marks,
                        &mut self.spans,
                    )?);
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        if result.is_err() {
            self.marks = before;
            self.spans.forget();
        }
        result
    }
}

fn append(
    conn: &Connection,
    statements: &mut Statements,
    ev: &NewEvent,
    marks: &mut Marks,
    spans: &mut Spans,
) -> rusqlite::Result<(Appended, Option<Fresh>)> {
    let cb = &ev.callback;
    let fingerprint = ev.fingerprint;
    let sequence = marks.next_sequence;
    let now = ev.received_at;
    // A duplicate is about the same file as its original, so it is looked up among that
    // file's events (dedup group = the recording's first sequence; 0 when not about a
    // file). A file event of a recording not yet stored cannot be a duplicate: every
    // stored file event created or updated its recording. (The recording id is `None`
    // for task-level events, RECORD_START and RECORD_OVER, and unknown types.)
    let id = ev.recording_id.as_ref();
    let existing = match &id {
        Some(id) => statements
            .load_recording
            .query_row([id], recording)
            .optional()?,
        None => None,
    };
    let dedup_group = match (&id, &existing) {
        (Some(_), Some(rec)) => rec.first_sequence,
        (Some(_), None) => sequence,
        (None, _) => 0,
    };
    if id.is_none() || existing.is_some() {
        // A callback that names no occurrence is also the one received the day before.
        let mut original: Option<(i64, Option<String>)> = None;
        for fp in std::iter::once(&fingerprint).chain(&ev.day_before) {
            original = statements
                .find_duplicate
                .query_row(params![dedup_group, &fp[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if original.is_some() {
                break;
            }
        }
        if let Some((sequence, recording_id)) = original {
            let appended = Appended {
                sequence,
                duplicate: true,
                recording_id,
            };
            return Ok((appended, None));
        }
    }

    let mut ended = Ended::default();
    let recording = if cb.event_type == EventType::RecordOver {
        ended = Ended::oldest(close_task(
            conn,
            &cb.project_id,
            &cb.task_id,
            sequence,
            now,
        )?);
        None
    } else if let Some(id) = id {
        let task_over = !cb.task_id.is_empty() && task_is_over(conn, &cb.project_id, &cb.task_id)?;
        let folded = Recording::apply(existing, cb, id, task_over, sequence, now);
        if let Some(rec) = &folded {
            save_recording_with(&mut statements.save_recording, rec)?;
            spans.widen(conn, rec)?;
            widen_max_span(conn, rec, &mut marks.max_span_us)?;
        }
        folded
    } else {
        None
    };
    statements.insert_event.execute(params![
        sequence,
        dedup_group,
        &fingerprint[..],
        to_micros(ev.received_at),
        cb.event_type.as_str(),
        cb.app,
        cb.stream,
        recording.as_ref().map(|r| r.id.as_str()),
        recording.as_ref().map(|r| r.state as i32),
        ev.raw_body,
    ])?;
    marks.next_sequence += 1;

    let appended = Appended {
        sequence,
        duplicate: false,
        recording_id: recording.as_ref().map(|r| r.id.clone()),
    };
    Ok((appended, Some(Fresh { recording, ended })))
}

fn task_is_over(conn: &Connection, project_id: &str, task_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM tasks_over WHERE project_id = ?1 AND task_id = ?2")?
        .exists([project_id, task_id])
}

/// RECORD_OVER: remembers the task as over and ends its files still recording. Returns
/// those it ended (in no order: [`Ended::oldest`] orders them).
fn close_task(
    conn: &Connection,
    project_id: &str,
    task_id: &str,
    sequence: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<Vec<Recording>> {
    let mut ended = Vec::new();
    if task_id.is_empty() {
        return Ok(ended);
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
        let state = rec.state;
        if rec.close_task(sequence, now) {
            save_recording(conn, &rec)?;
            if rec.state != state {
                ended.push(rec);
            }
        }
    }
    Ok(ended)
}

/// Keeps `max_span_us`, the longest [start, end) of any recording, which bounded how far
/// back FindRecordings looked before `stream_spans` ([`Spans`]) did: kept so that the
/// previous version still finds every file if the service is rolled back to it. Written
/// only when it grows (`known` is the stored value).
fn widen_max_span(conn: &Connection, rec: &Recording, known: &mut i64) -> rusqlite::Result<()> {
    if let (Some(start), Some(end)) = (rec.start_time, rec.end_time) {
        let span = to_micros(end) - to_micros(start);
        if span > *known {
            conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'max_span_us'")?
                .execute([span])?;
            *known = span;
        }
    }
    Ok(())
}

/// The longest span of each stream's files, as `stream_spans` holds it, for the streams
/// written lately: it bounds how far back FindRecordings looks on that stream. A span is
/// written only when it is longer than the stream's, so the usual file costs a lookup here
/// instead of one in the table (which, as a trigger, cost ~10% of the writer's time per
/// callback). Forgotten when a transaction rolls back (it may hold what was not
/// committed), and when it has grown past [`Spans::MAX_STREAMS`] (then read again).
#[derive(Default)]
struct Spans(HashMap<String, i64>);

impl Spans {
    /// Streams remembered at most: ~5 MiB.
    const MAX_STREAMS: usize = 65_536;

    /// Widens the stream's span to `rec`'s, if it has both times and is longer.
    fn widen(&mut self, conn: &Connection, rec: &Recording) -> rusqlite::Result<()> {
        let (Some(start), Some(end)) = (rec.start_time, rec.end_time) else {
            return Ok(());
        };
        let span = (to_micros(end) - to_micros(start)).max(0);
        let known = match self.0.get(rec.stream.as_str()) {
            Some(known) => *known,
            None => {
                if self.0.len() >= Self::MAX_STREAMS {
                    self.0.clear();
                }
                let stored = conn
                    .prepare_cached("SELECT max_span_us FROM stream_spans WHERE stream = ?1")?
                    .query_row([&rec.stream], |r| r.get(0))
                    .optional()?
                    .unwrap_or(-1);
                self.0.insert(rec.stream.clone(), stored);
                stored
            }
        };
        if span > known {
            conn.prepare_cached(
                "INSERT INTO stream_spans (stream, max_span_us) VALUES (?1, ?2) \
                 ON CONFLICT (stream) DO UPDATE SET max_span_us = excluded.max_span_us",
            )?
            .execute(params![rec.stream, span])?;
            self.0.insert(rec.stream.clone(), span);
        }
        Ok(())
    }

    fn forget(&mut self) {
        self.0.clear();
    }
}
