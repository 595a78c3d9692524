//! Retention on SQLite: the oldest events removed, one small transaction at a time, by
//! the writer thread between two batches of appends (so neither waits on the other's lock
//! and removals progress under any load), with the recordings and task ends none of whose
//! events is left.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::rows::stored_callback;
use crate::store::{PRUNE_CHUNK, Pruned};

/// One transaction: up to [`PRUNE_CHUNK`] of the oldest events received before
/// `before_us` (µs since the epoch), up to the first one received at or after it.
pub fn prune_chunk(conn: &mut Connection, before_us: i64) -> rusqlite::Result<Pruned> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The body is read only for a task's end, whose project and task it needs.
    let oldest: Vec<(i64, i64, Option<String>, Option<String>)> = tx
        .prepare_cached(
            "SELECT sequence, received_at, recording_id, \
             CASE WHEN event_type = 'RECORD_OVER' THEN raw_body END \
             FROM events ORDER BY sequence LIMIT ?1",
        )?
        .query_map([PRUNE_CHUNK], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let due = oldest
        .iter()
        .take_while(|(_, received_at, ..)| *received_at < before_us)
        .count();
    let Some(last) = oldest[..due].last() else {
        return Ok(Pruned::default());
    };
    // Every sequence below this is gone once the transaction commits.
    let first_kept = last.0 + 1;
    let events = tx.execute("DELETE FROM events WHERE sequence < ?1", [first_kept])?;

    let mut recordings = 0;
    let ids: BTreeSet<&str> = oldest[..due]
        .iter()
        .filter_map(|(_, _, id, ..)| id.as_deref())
        .collect();
    for id in ids {
        recordings += tx
            .prepare_cached("DELETE FROM recordings WHERE id = ?1 AND last_sequence < ?2")?
            .execute(params![id, first_kept])?;
    }
    // A task's end (RECORD_OVER) names no recording, but is the last event of the files
    // it ended; removed with it: those files, and the task's end itself.
    for (sequence, _, _, body) in &oldest[..due] {
        let Some(body) = body else { continue };
        let Ok(over) = stored_callback(body) else {
            tracing::debug!(sequence, "a removed RECORD_OVER no longer parses");
            continue;
        };
        recordings += tx
            .prepare_cached(
                "DELETE FROM recordings WHERE project_id = ?1 AND task_id = ?2 \
                 AND task_id <> '' AND last_sequence < ?3",
            )?
            .execute(params![over.project_id, over.task_id, first_kept])?;
        tx.prepare_cached(
            "DELETE FROM tasks_over WHERE project_id = ?1 AND task_id = ?2 AND sequence < ?3",
        )?
        .execute(params![over.project_id, over.task_id, first_kept])?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('first_kept', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [first_kept],
    )?;
    tx.commit()?;
    Ok(Pruned {
        events: events as u64,
        recordings: recordings as u64,
    })
}

/// The lowest sequence not removed by [`prune_chunk`] (1 when nothing was).
pub fn first_kept(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'first_kept'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(1))
}
