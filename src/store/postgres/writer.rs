//! The PostgreSQL writer: like the SQLite one, it commits whatever callbacks are queued as
//! one transaction (group commit). Replicas write concurrently, so each transaction first
//! takes a transaction-scoped advisory lock: sequences are then assigned in commit order,
//! without gaps, across all replicas — which WatchEvents relies on.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::lock::{Bounded, TAKE_APPEND_LOCK, under_lock};
use super::rows::{self, RECORDING_COLUMNS};
use crate::domain::time::to_micros;
use crate::domain::{Callback, EventType, Recording};
use crate::error::{Chain, Error};
use crate::store::Appended;
use crate::store::queue::Job;

/// Most callbacks in one transaction.
const MAX_BATCH: usize = 512;
/// The channel replicas announce commits on.
pub const CHANNEL: &str = "recording_events";

/// The newest sequence handed out (0 when none), never below what retention removed:
/// sequences are not reused.
pub const LAST_SEQUENCE: &str = "SELECT greatest(coalesce(max(sequence), 0), \
     coalesce((SELECT value - 1 FROM meta WHERE key = 'first_kept'), 0)) FROM events";

/// The recordings of a batch, by id.
static LOAD_RECORDINGS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ANY($1)"));
/// The files of a task its RECORD_OVER ends.
static OPEN_OF_TASK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RECORDING_COLUMNS} FROM recordings \
         WHERE project_id = $1 AND task_id = $2 AND NOT task_over"
    )
});

/// What opens a batch's transaction: the append lock, and a plan made for each
/// statement's values. The writer's statements are prepared once per connection; a plan
/// made once for any values (PostgreSQL's generic plan, chosen after five executions)
/// would keep the choice it made while the tables were small, e.g. to read all of
/// `recordings` for `id = ANY($1)` rather than its index.
static BEGIN_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SET LOCAL plan_cache_mode = force_custom_plan; {}",
        *TAKE_APPEND_LOCK
    )
});

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

/// Appends a batch in a few round trips, whatever its size: the append lock; then,
/// pipelined, the last sequence and the duplicates, recordings and finished tasks
/// involved; the fold in memory (in order, so later callbacks of the batch see earlier
/// ones); then, pipelined, every write, each one statement for the whole batch.
async fn append_all(
    tx: &Transaction<'_>,
    jobs: &[Job],
) -> Result<Vec<Appended>, tokio_postgres::Error> {
    tx.batch_execute(&BEGIN_BATCH).await?;
    let callbacks: Vec<&Callback> = jobs.iter().map(|j| &j.event.callback).collect();
    let fingerprints: Vec<[u8; 32]> = jobs.iter().map(|j| j.event.fingerprint).collect();

    // What is already stored (a callback that names no occurrence is also the one
    // received the day before).
    let fp_refs: Vec<&[u8]> = fingerprints
        .iter()
        .chain(jobs.iter().filter_map(|j| j.event.day_before.as_ref()))
        .map(|f| &f[..])
        .collect();
    let ids: Vec<&String> = jobs
        .iter()
        .filter_map(|j| j.event.recording_id.as_ref())
        .collect();
    let (projects, tasks): (Vec<&str>, Vec<&str>) = callbacks
        .iter()
        .filter(|cb| !cb.task_id.is_empty())
        .map(|cb| (cb.project_id.as_str(), cb.task_id.as_str()))
        .unzip();
    let last = tx.prepare_cached(LAST_SEQUENCE).await?;
    let stored = tx
        .prepare_cached(
            "SELECT fingerprint, sequence, recording_id FROM events WHERE fingerprint = ANY($1)",
        )
        .await?;
    let load = tx.prepare_cached(&LOAD_RECORDINGS).await?;
    let finished = tx
        .prepare_cached(
            "SELECT t.project_id, t.task_id FROM tasks_over t \
             JOIN unnest($1::text[], $2::text[]) AS k(project_id, task_id) \
               ON t.project_id = k.project_id AND t.task_id = k.task_id",
        )
        .await?;
    let by_fingerprint: [Param<'_>; 1] = [&fp_refs];
    let by_id: [Param<'_>; 1] = [&ids];
    let by_task: [Param<'_>; 2] = [&projects, &tasks];
    let (last, stored, loaded, finished) = futures_util::try_join!(
        tx.query_one(&last, &[]),
        tx.query(&stored, &by_fingerprint),
        tx.query(&load, &by_id),
        tx.query(&finished, &by_task),
    )?;
    let mut next: i64 = last.get::<_, i64>(0) + 1;
    let mut known: HashMap<[u8; 32], (i64, Option<String>)> = HashMap::new();
    for row in stored {
        let fp: &[u8] = row.get(0);
        if let Ok(fp) = <[u8; 32]>::try_from(fp) {
            known.insert(fp, (row.get(1), row.get(2)));
        }
    }
    let mut recordings: HashMap<String, Recording> = HashMap::new();
    for row in loaded {
        let rec = rows::recording(&row);
        recordings.insert(rec.id.clone(), rec);
    }
    let mut over: HashSet<(String, String)> = HashSet::new();
    for row in finished {
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
                let open = tx.prepare_cached(&OPEN_OF_TASK).await?;
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
    let save = tx.prepare_cached(&rows::SAVE_RECORDINGS).await?;
    let insert = tx.prepare_cached(&rows::INSERT_EVENTS).await?;
    // Delivered at commit to every replica's listener (see `listen`), naming the table
    // written: deployments in other schemas of the database listen on the same channel.
    let notify = tx
        .prepare_cached("SELECT pg_notify($1, 'events'::regclass::oid::text)")
        .await?;
    let saved: Vec<&Recording> = changed.iter().map(|id| &recordings[id]).collect();
    let new_rows: Vec<rows::NewRow<'_>> = events
        .iter()
        .map(|(sequence, i, recording)| rows::NewRow {
            sequence: *sequence,
            fingerprint: &fingerprints[*i],
            event: &jobs[*i].event,
            recording: recording.as_ref().map(|(id, state)| (id.as_str(), *state)),
        })
        .collect();
    type Write<'w> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'w>,
    >;
    let (span, channel): ([Param<'_>; 1], [Param<'_>; 1]) = ([&max_span], [&CHANNEL]);
    let mut writes: Vec<Write<'_>> = Vec::new();
    for (project, task, sequence) in &newly_over {
        let remember = &remember;
        writes.push(Box::pin(async move {
            tx.execute(remember, &[project, task, sequence]).await
        }));
    }
    if !saved.is_empty() {
        writes.push(Box::pin(rows::save_recordings_with(tx, &save, &saved)));
    }
    writes.push(Box::pin(rows::insert_events_with(tx, &insert, &new_rows)));
    // `meta.max_span_us`, the longest span of any file, bounded FindRecordings before
    // `stream_spans` (kept by a trigger) did: still kept for replicas of the previous
    // version reading it, during a rolling upgrade or after a rollback.
    if max_span > 0 {
        writes.push(Box::pin(tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'max_span_us' AND value < $1",
            &span,
        )));
    }
    writes.push(Box::pin(tx.execute(&notify, &channel)));
    futures_util::future::try_join_all(writes).await?;
    Ok(outcomes)
}

/// A statement's parameter.
type Param<'a> = &'a (dyn ToSql + Sync);

/// A recording's id and its state right after an event.
type RecordingRef = (String, i32);
