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

/// A batch's rows, each seen as a `V` (a recording, a callback), to bind one array per
/// column.
struct Columns<'a, T, V> {
    rows: &'a [T],
    view: fn(&'a T) -> &'a V,
}

impl<'a, T, V> Columns<'a, T, V> {
    /// The column of `value` of every row.
    fn of<X>(&self, value: impl Fn(&'a V) -> X) -> Vec<X> {
        self.rows
            .iter()
            .map(|row| value((self.view)(row)))
            .collect()
    }

    fn text(&self, value: impl Fn(&'a V) -> &'a String) -> Vec<&'a str> {
        self.of(|v| value(v).as_str())
    }

    /// A time, as µs since the epoch.
    fn micros(
        &self,
        value: impl Fn(&'a V) -> Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<Option<i64>> {
        self.of(|v| value(v).map(to_micros))
    }
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
    let r = Columns {
        rows: recs,
        view: |r| *r,
    };
    let params: [&(dyn ToSql + Sync); 27] = [
        &r.text(|r| &r.id),
        &r.of(|r| r.first_sequence),
        &r.of(|r| r.last_sequence),
        &r.of(|r| r.state as i32),
        &r.of(|r| r.rank as i32),
        &r.of(|r| r.task_over),
        &r.text(|r| &r.project_id),
        &r.text(|r| &r.publish_domain),
        &r.text(|r| &r.app),
        &r.text(|r| &r.stream),
        &r.text(|r| &r.record_format),
        &r.text(|r| &r.task_id),
        &r.text(|r| &r.job_id),
        &r.text(|r| &r.download_url),
        &r.text(|r| &r.asset_id),
        &r.text(|r| &r.play_url),
        &r.of(|r| r.file_size),
        &r.of(|r| r.record_duration),
        &r.micros(|r| r.start_time),
        &r.micros(|r| r.end_time),
        &r.of(|r| r.width),
        &r.of(|r| r.height),
        &r.text(|r| &r.obs_location),
        &r.text(|r| &r.obs_bucket),
        &r.text(|r| &r.obs_object),
        &r.of(|r| to_micros(r.create_time)),
        &r.of(|r| to_micros(r.update_time)),
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
    let e = Columns {
        rows: events,
        view: |e| e,
    };
    let c = Columns {
        rows: events,
        view: |e| &e.event.callback,
    };
    let params: [&(dyn ToSql + Sync); 28] = [
        &e.of(|e| e.sequence),
        &e.of(|e| &e.fingerprint[..]),
        &e.of(|e| to_micros(e.event.received_at)),
        &c.of(|c| c.event_type.as_str()),
        &c.text(|c| &c.project_id),
        &c.text(|c| &c.publish_domain),
        &c.text(|c| &c.app),
        &c.text(|c| &c.stream),
        &c.text(|c| &c.record_format),
        &c.text(|c| &c.task_id),
        &c.text(|c| &c.job_id),
        &c.text(|c| &c.download_url),
        &c.text(|c| &c.asset_id),
        &c.text(|c| &c.play_url),
        &c.of(|c| c.file_size),
        &c.of(|c| c.record_duration),
        &c.micros(|c| c.start_time),
        &c.micros(|c| c.end_time),
        &c.of(|c| c.width),
        &c.of(|c| c.height),
        &c.text(|c| &c.obs_location),
        &c.text(|c| &c.obs_bucket),
        &c.text(|c| &c.obs_object),
        &c.text(|c| &c.auth_sign),
        &c.of(|c| c.auth_timestamp),
        &e.of(|e| e.recording.map(|(id, _)| id)),
        &e.of(|e| e.recording.map(|(_, state)| state)),
        &e.of(|e| e.event.raw_body.as_str()),
    ];
    client.execute(stmt, &params).await
}
