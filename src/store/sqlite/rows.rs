//! Mapping between rows and domain types, shared by the writer and the readers.

use rusqlite::{Connection, OptionalExtension, Row, Statement, params};

use crate::domain::recording::Rank;
use crate::domain::time::{from_micros, to_micros};
use crate::domain::{Callback, EventType, Recording, RecordingState};
use crate::pb::v1::VodCallBackRequest;
use crate::store::StoredEvent;
use crate::store::columns::save_recording_sql;
pub use crate::store::columns::{RECORDING_COLUMNS, prefixed};
use crate::store::history::{Overs, Past};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

fn time(row: &Row, i: usize) -> rusqlite::Result<Option<chrono::DateTime<chrono::Utc>>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(from_micros))
}

/// Reads a recording from a row selected with [`RECORDING_COLUMNS`].
pub fn recording(row: &Row) -> rusqlite::Result<Recording> {
    recording_at(row, 0)
}

/// Reads a recording from [`RECORDING_COLUMNS`] starting at column `base`.
fn recording_at(row: &Row, base: usize) -> rusqlite::Result<Recording> {
    let time = |i: usize| time(row, base + i);
    let state: i32 = row.get(base + 3)?;
    Ok(Recording {
        id: row.get(base)?,
        first_sequence: row.get(base + 1)?,
        last_sequence: row.get(base + 2)?,
        state: RecordingState::from_i32(state).unwrap_or(RecordingState::Recording),
        rank: Rank::from_i64(row.get(base + 4)?),
        task_over: row.get(base + 5)?,
        project_id: row.get(base + 6)?,
        publish_domain: row.get(base + 7)?,
        app: row.get(base + 8)?,
        stream: row.get(base + 9)?,
        record_format: row.get(base + 10)?,
        task_id: row.get(base + 11)?,
        job_id: row.get(base + 12)?,
        download_url: row.get(base + 13)?,
        asset_id: row.get(base + 14)?,
        play_url: row.get(base + 15)?,
        file_size: row.get(base + 16)?,
        record_duration: row.get(base + 17)?,
        start_time: time(18)?,
        end_time: time(19)?,
        width: row.get(base + 20)?,
        height: row.get(base + 21)?,
        obs_location: row.get(base + 22)?,
        obs_bucket: row.get(base + 23)?,
        obs_object: row.get(base + 24)?,
        create_time: from_micros(row.get(base + 25)?),
        update_time: from_micros(row.get(base + 26)?),
    })
}

/// The columns [`event`] reads, `e` being `events`, followed by the recording's.
pub const EVENT_COLUMNS: &str =
    "e.sequence, e.received_at, e.recording_state, e.raw_body, e.event_type, e.app, e.stream";

/// Reads an event from a row selected as `{EVENT_COLUMNS}, {RECORDING_COLUMNS}` (events
/// LEFT JOIN recordings). The callback is read back from the body as received; the
/// recording is the current one with the state it had right after this event (see
/// [`crate::store::history::attach`] for the one it was).
pub fn event(row: &Row) -> rusqlite::Result<StoredEvent> {
    const RECORDING_AT: usize = 7;
    let sequence: i64 = row.get(0)?;
    let state: Option<i32> = row.get(2)?;
    let has_recording = row.get_ref(RECORDING_AT)?.as_str_or_null()?.is_some();
    let recording = match (state.and_then(RecordingState::from_i32), has_recording) {
        (Some(state), true) => Some(Recording {
            state,
            ..recording_at(row, RECORDING_AT)?
        }),
        _ => None,
    };
    let callback = match stored_callback(row.get_ref(3)?.as_str()?) {
        Ok(callback) => callback,
        Err(e) => {
            // Every stored body passed validation when it came in; should one not pass
            // today's, the watchers still get the event (with what its columns hold)
            // instead of a stream stuck on it. The body stays in the store as it was.
            tracing::warn!(sequence, error = %crate::error::Escaped(e.message()), "stored body no longer parses; sending its columns");
            Callback::known_only_by(
                EventType::parse(row.get_ref(4)?.as_str()?),
                row.get(5)?,
                row.get(6)?,
            )
        }
    };
    Ok(StoredEvent {
        sequence,
        received_at: from_micros(row.get(1)?),
        callback,
        recording,
        ended: Default::default(),
    })
}

/// The stored events of each recording in `wanted` (id → its first sequence and the
/// last sequence needed), for [`crate::store::history::attach`], in sequence order. The
/// events of `page` are taken from it rather than parsed again.
pub fn past(
    conn: &Connection,
    wanted: &HashMap<String, (i64, i64)>,
    page: &[StoredEvent],
) -> rusqlite::Result<Vec<Past>> {
    let read: HashMap<i64, &Callback> = page.iter().map(|e| (e.sequence, &e.callback)).collect();
    // A file's events share its dedup group, the recording's first sequence (indexed).
    let mut select = conn.prepare_cached(
        "SELECT sequence, received_at, raw_body FROM events \
         WHERE dedup_group = ?1 AND sequence <= ?2 AND recording_id = ?3 ORDER BY sequence",
    )?;
    let mut past = Vec::new();
    for (id, (first, upto)) in wanted {
        let mut rows = select.query(params![first, upto, id])?;
        while let Some(row) = rows.next()? {
            let sequence = row.get(0)?;
            let callback = match read.get(&sequence) {
                Some(callback) => Some((*callback).clone()),
                None => stored_callback(row.get_ref(2)?.as_str()?).ok(),
            };
            past.push(Past {
                sequence,
                received_at: from_micros(row.get(1)?),
                recording_id: id.clone(),
                callback,
            });
        }
    }
    past.sort_unstable_by_key(|p| p.sequence);
    Ok(past)
}

/// Adds to `wanted` the files each RECORD_OVER of `ends` (its sequence, project and task;
/// [`crate::store::history::task_ends`]) may have ended: those of its task created before
/// it and last changed at it or later (a file it ended was changed by it).
pub fn task_files(
    conn: &Connection,
    ends: &[(i64, &str, &str)],
    wanted: &mut HashMap<String, (i64, i64)>,
) -> rusqlite::Result<()> {
    let mut select = conn.prepare_cached(
        "SELECT id, first_sequence FROM recordings WHERE project_id = ?1 AND task_id = ?2 \
         AND task_id <> '' AND first_sequence < ?3 AND last_sequence >= ?3",
    )?;
    for &(over, project, task) in ends {
        let mut rows = select.query(params![project, task, over])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            crate::store::history::want(wanted, &id, row.get(1)?, over);
        }
    }
    Ok(())
}

/// When the RECORD_OVER of each of `tasks` was stored, for [`crate::store::history::attach`].
pub fn overs(conn: &Connection, tasks: &HashSet<(String, String)>) -> rusqlite::Result<Overs> {
    let mut select = conn.prepare_cached(
        "SELECT t.sequence, e.received_at FROM tasks_over t \
         JOIN events e ON e.sequence = t.sequence WHERE t.project_id = ?1 AND t.task_id = ?2",
    )?;
    let mut overs = Overs::new();
    for task in tasks {
        let over = select
            .query_row([&task.0, &task.1], |r| {
                Ok((r.get::<_, i64>(0)?, from_micros(r.get(1)?)))
            })
            .optional()?;
        if let Some(over) = over {
            overs.insert(task.clone(), over);
        }
    }
    Ok(overs)
}

/// The newest sequence handed out (0 when none): AUTOINCREMENT's high-water mark, which
/// outlives the rows retention removes (sequences are never reused).
pub fn last_sequence(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
                    coalesce((SELECT max(sequence) FROM events), 0))",
        [],
        |r| r.get(0),
    )
}

pub fn stored_callback(raw: &str) -> Result<Callback, crate::error::Error> {
    let request: VodCallBackRequest = serde_json::from_str(raw)
        .map_err(|e| crate::error::Error::invalid("raw_body", e.to_string()))?;
    Callback::parse(request)
}

/// One recording by id.
pub fn load_recording(conn: &Connection, id: &str) -> rusqlite::Result<Option<Recording>> {
    conn.prepare_cached(&LOAD_RECORDING)?
        .query_row([id], recording)
        .optional()
}

/// Statements in SQLite's placeholder dialect, built once.
pub static LOAD_RECORDING: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ?1"));
pub static SAVE_RECORDING: LazyLock<String> =
    LazyLock::new(|| save_recording_sql(|n| format!("?{n}")));
/// The insert of an event, binding its columns in this order.
pub const INSERT_EVENT: &str = "INSERT INTO events (sequence, dedup_group, fingerprint, \
    received_at, event_type, app, stream, recording_id, recording_state, raw_body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Inserts a recording, or updates its mutable columns in place.
pub fn save_recording(conn: &Connection, r: &Recording) -> rusqlite::Result<()> {
    let mut save = conn.prepare_cached(&SAVE_RECORDING)?;
    save_recording_with(&mut save, r)
}

/// [`save_recording`] with the statement already prepared ([`SAVE_RECORDING`]).
pub fn save_recording_with(save: &mut Statement, r: &Recording) -> rusqlite::Result<()> {
    save.execute(params![
        r.id,
        r.first_sequence,
        r.last_sequence,
        r.state as i32,
        r.rank as i64,
        r.task_over,
        r.project_id,
        r.publish_domain,
        r.app,
        r.stream,
        r.record_format,
        r.task_id,
        r.job_id,
        r.download_url,
        r.asset_id,
        r.play_url,
        r.file_size,
        r.record_duration,
        r.start_time.map(to_micros),
        r.end_time.map(to_micros),
        r.width,
        r.height,
        r.obs_location,
        r.obs_bucket,
        r.obs_object,
        to_micros(r.create_time),
        to_micros(r.update_time),
    ])?;
    Ok(())
}
