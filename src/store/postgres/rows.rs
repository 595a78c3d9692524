//! Mapping between PostgreSQL rows and domain types (the twin of `sqlite/rows.rs`).

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::domain::recording::Rank;
use crate::domain::time::{from_micros, to_micros};
use crate::domain::{Callback, EventType, Recording, RecordingState};
pub use crate::store::columns::{EVENT_COLUMNS, RECORDING_COLUMNS, prefixed};
use crate::store::columns::{insert_events_sql, save_recordings_sql};
use crate::store::history::Past;
use crate::store::{NewEvent, StoredEvent};
use std::sync::LazyLock;

fn time(row: &Row, i: usize) -> Option<chrono::DateTime<chrono::Utc>> {
    row.get::<_, Option<i64>>(i).map(from_micros)
}

/// Reads a recording from [`RECORDING_COLUMNS`] starting at column `base`.
pub fn recording_at(row: &Row, base: usize) -> Recording {
    let state: i32 = row.get(base + 3);
    Recording {
        id: row.get(base),
        first_sequence: row.get(base + 1),
        last_sequence: row.get(base + 2),
        state: RecordingState::from_i32(state).unwrap_or(RecordingState::Recording),
        rank: Rank::from_i64(i64::from(row.get::<_, i32>(base + 4))),
        task_over: row.get(base + 5),
        project_id: row.get(base + 6),
        publish_domain: row.get(base + 7),
        app: row.get(base + 8),
        stream: row.get(base + 9),
        record_format: row.get(base + 10),
        task_id: row.get(base + 11),
        job_id: row.get(base + 12),
        download_url: row.get(base + 13),
        asset_id: row.get(base + 14),
        play_url: row.get(base + 15),
        file_size: row.get(base + 16),
        record_duration: row.get(base + 17),
        start_time: time(row, base + 18),
        end_time: time(row, base + 19),
        width: row.get(base + 20),
        height: row.get(base + 21),
        obs_location: row.get(base + 22),
        obs_bucket: row.get(base + 23),
        obs_object: row.get(base + 24),
        create_time: from_micros(row.get(base + 25)),
        update_time: from_micros(row.get(base + 26)),
    }
}

/// Reads a recording selected with [`RECORDING_COLUMNS`].
pub fn recording(row: &Row) -> Recording {
    recording_at(row, 0)
}

/// Reads an event selected as `{EVENT_COLUMNS}, {RECORDING_COLUMNS}` (events LEFT JOIN
/// recordings): the recording is the current one with the state right after the event.
pub fn event(row: &Row) -> StoredEvent {
    let state: Option<i32> = row.get(24);
    let has_recording = row.get::<_, Option<String>>(25).is_some();
    let recording = match (state.and_then(RecordingState::from_i32), has_recording) {
        (Some(state), true) => Some(Recording {
            state,
            ..recording_at(row, 25)
        }),
        _ => None,
    };
    StoredEvent {
        sequence: row.get(0),
        received_at: from_micros(row.get(1)),
        callback: callback(row),
        recording,
        ended: Default::default(),
    }
}

/// Reads a stored event of a recording selected as `{EVENT_COLUMNS}, recording_id`.
pub fn past(row: &Row) -> Past {
    Past {
        sequence: row.get(0),
        received_at: from_micros(row.get(1)),
        recording_id: row.get(25),
        callback: Some(callback(row)),
    }
}

/// The callback of a row selected with [`EVENT_COLUMNS`] first.
fn callback(row: &Row) -> Callback {
    Callback {
        event_type: EventType::parse(row.get::<_, &str>(2)),
        project_id: row.get(3),
        publish_domain: row.get(4),
        app: row.get(5),
        stream: row.get(6),
        record_format: row.get(7),
        task_id: row.get(8),
        job_id: row.get(9),
        download_url: row.get(10),
        asset_id: row.get(11),
        play_url: row.get(12),
        file_size: row.get(13),
        record_duration: row.get(14),
        start_time: time(row, 15),
        end_time: time(row, 16),
        width: row.get(17),
        height: row.get(18),
        obs_location: row.get(19),
        obs_bucket: row.get(20),
        obs_object: row.get(21),
        auth_sign: row.get(22),
        auth_timestamp: row.get(23),
    }
}

/// The SQL types of [`RECORDING_COLUMNS`], in order.
const RECORDING_TYPES: [&str; 27] = [
    "text", "bigint", "bigint", "integer", "integer", "boolean", "text", "text", "text", "text",
    "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint",
    "bigint", "bigint", "text", "text", "text", "bigint", "bigint",
];
/// The SQL types of the columns [`insert_events_sql`] binds, in order.
const EVENT_TYPES: [&str; 28] = [
    "bigint", "bytea", "bigint", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "text",
    "text", "text", "text", "bigint", "text", "integer", "text",
];

/// A batch's statements, built once: every recording a batch changed is saved by one
/// statement and every event inserted by another, the rows bound as one array per column,
/// so a batch costs the server two statements (and the connection two replies), not two
/// per callback.
pub static SAVE_RECORDINGS: LazyLock<String> =
    LazyLock::new(|| save_recordings_sql(&RECORDING_TYPES));
pub static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| insert_events_sql(&EVENT_TYPES));

/// One value per item, for a column bound as an array.
fn column<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}

/// Runs the prepared [`SAVE_RECORDINGS`] for `recs` (distinct ids).
///
/// # Errors
/// When the statement fails.
pub async fn save_recordings_with(
    client: &deadpool_postgres::Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    recs: &[&Recording],
) -> Result<u64, tokio_postgres::Error> {
    let text = |f: fn(&Recording) -> &String| column(recs, move |r| f(r).as_str());
    let int = |f: fn(&Recording) -> Option<i64>| column(recs, move |r| f(r));
    let micros = |f: fn(&Recording) -> Option<chrono::DateTime<chrono::Utc>>| {
        column(recs, move |r| f(r).map(to_micros))
    };
    let params: [&(dyn ToSql + Sync); 27] = [
        &text(|r| &r.id),
        &column(recs, |r| r.first_sequence),
        &column(recs, |r| r.last_sequence),
        &column(recs, |r| r.state as i32),
        &column(recs, |r| r.rank as i32),
        &column(recs, |r| r.task_over),
        &text(|r| &r.project_id),
        &text(|r| &r.publish_domain),
        &text(|r| &r.app),
        &text(|r| &r.stream),
        &text(|r| &r.record_format),
        &text(|r| &r.task_id),
        &text(|r| &r.job_id),
        &text(|r| &r.download_url),
        &text(|r| &r.asset_id),
        &text(|r| &r.play_url),
        &int(|r| r.file_size),
        &int(|r| r.record_duration),
        &micros(|r| r.start_time),
        &micros(|r| r.end_time),
        &int(|r| r.width),
        &int(|r| r.height),
        &text(|r| &r.obs_location),
        &text(|r| &r.obs_bucket),
        &text(|r| &r.obs_object),
        &column(recs, |r| to_micros(r.create_time)),
        &column(recs, |r| to_micros(r.update_time)),
    ];
    client.execute(stmt, &params).await
}

/// An event as [`insert_events_with`] inserts it.
pub struct NewRow<'a> {
    pub sequence: i64,
    pub fingerprint: &'a [u8; 32],
    pub event: &'a NewEvent,
    /// The recording it changed, and that recording's state right after it.
    pub recording: Option<(&'a str, i32)>,
}

/// Runs the prepared [`INSERT_EVENTS`] for `events`.
///
/// # Errors
/// When the statement fails.
pub async fn insert_events_with(
    client: &deadpool_postgres::Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    events: &[NewRow<'_>],
) -> Result<u64, tokio_postgres::Error> {
    let text = |f: fn(&Callback) -> &String| column(events, move |e| f(&e.event.callback).as_str());
    let int = |f: fn(&Callback) -> Option<i64>| column(events, move |e| f(&e.event.callback));
    let micros = |f: fn(&Callback) -> Option<chrono::DateTime<chrono::Utc>>| {
        column(events, move |e| f(&e.event.callback).map(to_micros))
    };
    let params: [&(dyn ToSql + Sync); 28] = [
        &column(events, |e| e.sequence),
        &column(events, |e| &e.fingerprint[..]),
        &column(events, |e| to_micros(e.event.received_at)),
        &column(events, |e| e.event.callback.event_type.as_str()),
        &text(|c| &c.project_id),
        &text(|c| &c.publish_domain),
        &text(|c| &c.app),
        &text(|c| &c.stream),
        &text(|c| &c.record_format),
        &text(|c| &c.task_id),
        &text(|c| &c.job_id),
        &text(|c| &c.download_url),
        &text(|c| &c.asset_id),
        &text(|c| &c.play_url),
        &int(|c| c.file_size),
        &int(|c| c.record_duration),
        &micros(|c| c.start_time),
        &micros(|c| c.end_time),
        &int(|c| c.width),
        &int(|c| c.height),
        &text(|c| &c.obs_location),
        &text(|c| &c.obs_bucket),
        &text(|c| &c.obs_object),
        &text(|c| &c.auth_sign),
        &int(|c| c.auth_timestamp),
        &column(events, |e| e.recording.map(|(id, _)| id)),
        &column(events, |e| e.recording.map(|(_, state)| state)),
        &column(events, |e| e.event.raw_body.as_str()),
    ];
    client.execute(stmt, &params).await
}
