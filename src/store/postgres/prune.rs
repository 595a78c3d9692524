//! Retention on PostgreSQL: the oldest events removed in small, paced transactions, each
//! under the append lock (so sequences stay in commit order for every replica, and any
//! replica may run it), with the recordings and task ends none of whose events is left.

use deadpool_postgres::{Client, Pool};

use super::lock;
use crate::domain::EventType;
use crate::error::Error;
use crate::store::{PRUNE_CHUNK, Pruned, pace_removals};

/// Removes the events received before `before` (µs since the epoch), oldest first, up to
/// the first one received at or after it.
///
/// # Errors
/// `Unavailable` when the database fails (what was removed before stays removed).
pub async fn prune(pool: &Pool, before: i64) -> Result<Pruned, Error> {
    let mut pruned = Pruned::default();
    loop {
        let started = std::time::Instant::now();
        let client = pool.get().await.map_err(Error::store)?;
        let chunk = lock::under_lock(client, async |client| prune_chunk(client, before).await)
            .await
            .map_err(Error::store)?;
        pruned.events += chunk.events;
        pruned.recordings += chunk.recordings;
        if chunk.events < PRUNE_CHUNK as u64 {
            return Ok(pruned);
        }
        pace_removals(started).await;
    }
}

/// The lowest sequence not removed by [`prune`] (1 when nothing was).
///
/// # Errors
/// `Unavailable` when the database fails.
pub async fn first_kept(client: &Client) -> Result<i64, Error> {
    let row = client
        .query_opt("SELECT value FROM meta WHERE key = 'first_kept'", &[])
        .await
        .map_err(Error::store)?;
    Ok(row.map_or(1, |r| r.get(0)))
}

/// One transaction: up to [`PRUNE_CHUNK`] of the oldest events, under the append lock.
async fn prune_chunk(client: &mut Client, before: i64) -> Result<Pruned, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&lock::TAKE_APPEND_LOCK).await?;
    let oldest = tx
        .query(
            "SELECT sequence, received_at, recording_id, event_type, project_id, task_id \
             FROM events ORDER BY sequence LIMIT $1",
            &[&PRUNE_CHUNK],
        )
        .await?;
    let due = oldest
        .iter()
        .take_while(|r| r.get::<_, i64>(1) < before)
        .count();
    let Some(last) = oldest[..due].last() else {
        return Ok(Pruned::default());
    };
    // Every sequence below this is gone once the transaction commits.
    let first_kept = last.get::<_, i64>(0) + 1;
    let events = tx
        .execute("DELETE FROM events WHERE sequence < $1", &[&first_kept])
        .await?;
    let mut ids: Vec<&str> = oldest[..due]
        .iter()
        .filter_map(|r| r.get::<_, Option<&str>>(2))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut recordings = tx
        .execute(
            "DELETE FROM recordings WHERE id = ANY($1) AND last_sequence < $2",
            &[&ids, &first_kept],
        )
        .await?;
    // A task's end (RECORD_OVER) names no recording, but is the last event of the files
    // it ended; removed with it: those files, and the task's end itself.
    for over in oldest[..due]
        .iter()
        .filter(|r| EventType::parse(r.get(3)) == EventType::RecordOver)
    {
        let (project_id, task_id): (&str, &str) = (over.get(4), over.get(5));
        recordings += tx
            .execute(
                "DELETE FROM recordings WHERE project_id = $1 AND task_id = $2 \
                 AND task_id <> '' AND last_sequence < $3",
                &[&project_id, &task_id, &first_kept],
            )
            .await?;
        tx.execute(
            "DELETE FROM tasks_over WHERE project_id = $1 AND task_id = $2 AND sequence < $3",
            &[&project_id, &task_id, &first_kept],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('first_kept', $1) \
         ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
        &[&first_kept],
    )
    .await?;
    tx.commit().await?;
    Ok(Pruned { events, recordings })
}
