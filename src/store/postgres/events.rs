//! Events read back (WatchEvents pages, and the listener's reads of every replica's
//! commits), each with its recording as it was right after it, and each RECORD_OVER with
//! the files it ended ([`history`]).

use deadpool_postgres::{Client, Pool};

use super::read;
use super::rows::{self, EVENT_COLUMNS, RECORDING_COLUMNS, prefixed};
use crate::domain::time::from_micros;
use crate::error::Error;
use crate::store::{EventFilter, StoredEvent, history};

/// Up to `limit` events after the sequence `after` that pass `filter`, in sequence order.
pub(super) async fn read_events(
    pool: &Pool,
    after: i64,
    filter: &EventFilter,
    limit: usize,
) -> Result<Vec<StoredEvent>, Error> {
    let sql = format!(
        "SELECT {}, {} FROM events e LEFT JOIN recordings r ON r.id = e.recording_id \
         WHERE e.sequence > $1 AND ($2::text IS NULL OR e.app = $2) \
         AND ($3::text IS NULL OR e.stream = $3) AND ($4::text IS NULL OR e.event_type = $4) \
         ORDER BY e.sequence LIMIT $5",
        prefixed(EVENT_COLUMNS, "e"),
        prefixed(RECORDING_COLUMNS, "r"),
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read(pool, async |client| {
        let stmt = client.prepare_cached(&sql).await.map_err(Error::store)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &after,
                    &filter.app,
                    &filter.stream,
                    &filter.event_type,
                    &limit,
                ],
            )
            .await
            .map_err(Error::store)?;
        let mut page: Vec<StoredEvent> = rows.iter().map(rows::event).collect();
        as_it_was(client, &mut page).await?;
        Ok(page)
    })
    .await
}

/// Gives each event of `page` its recording as it was right after it ([`history`]).
async fn as_it_was(client: &Client, page: &mut [StoredEvent]) -> Result<(), Error> {
    let mut wanted = history::wanted(page);
    let ends = history::task_ends(page);
    if !ends.is_empty() {
        // The files each RECORD_OVER may have ended: those of its task created before it
        // and last changed at it or later (a file it ended was changed by it).
        let (overs, (projects, tasks)): (Vec<i64>, (Vec<&str>, Vec<&str>)) =
            ends.iter().map(|&(over, p, t)| (over, (p, t))).unzip();
        let stmt = client
            .prepare_cached(
                "SELECT r.id, r.first_sequence, k.over FROM recordings r \
                 JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS k(over, project_id, task_id) \
                   ON r.project_id = k.project_id AND r.task_id = k.task_id \
                 WHERE r.task_id <> '' AND r.first_sequence < k.over AND r.last_sequence >= k.over",
            )
            .await
            .map_err(Error::store)?;
        for row in client
            .query(&stmt, &[&overs, &projects, &tasks])
            .await
            .map_err(Error::store)?
        {
            history::want(&mut wanted, row.get(0), row.get(1), row.get(2));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let (ids, upto): (Vec<String>, Vec<i64>) =
        wanted.into_iter().map(|(id, (_, upto))| (id, upto)).unzip();
    let past_sql = format!(
        "SELECT {}, e.recording_id FROM events e \
         JOIN unnest($1::text[], $2::bigint[]) AS w(id, upto) \
           ON e.recording_id = w.id AND e.sequence <= w.upto \
         ORDER BY e.sequence",
        prefixed(EVENT_COLUMNS, "e"),
    );
    let stmt = client
        .prepare_cached(&past_sql)
        .await
        .map_err(Error::store)?;
    let past: Vec<history::Past> = client
        .query(&stmt, &[&ids, &upto])
        .await
        .map_err(Error::store)?
        .iter()
        .map(rows::past)
        .collect();
    let (projects, tasks): (Vec<String>, Vec<String>) = history::tasks(&past).into_iter().unzip();
    let stmt = client
        .prepare_cached(
            "SELECT t.project_id, t.task_id, t.sequence, e.received_at FROM tasks_over t \
             JOIN unnest($1::text[], $2::text[]) AS k(project_id, task_id) \
               ON t.project_id = k.project_id AND t.task_id = k.task_id \
             JOIN events e ON e.sequence = t.sequence",
        )
        .await
        .map_err(Error::store)?;
    let overs: history::Overs = client
        .query(&stmt, &[&projects, &tasks])
        .await
        .map_err(Error::store)?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), from_micros(r.get(3)))))
        .collect();
    history::attach(page, &past, &overs);
    Ok(())
}
