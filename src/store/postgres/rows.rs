//! Mapping between PostgreSQL rows and domain types (the twin of `sqlite/rows.rs`).

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::domain::recording::Rank;
use crate::domain::time::{from_micros, to_micros};
use crate::domain::{Callback, EventType, Recording, RecordingState};
use crate::store::StoredEvent;
pub use crate::store::columns::{EVENT_COLUMNS, RECORDING_COLUMNS, prefixed};
use crate::store::columns::{insert_event_sql, save_recording_sql};
use crate::store::history::Past;
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

/// Statements in PostgreSQL's placeholder dialect, built once.
pub static SAVE_RECORDING: LazyLock<String> =
    LazyLock::new(|| save_recording_sql(|n| format!("${n}")));
pub static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| insert_event_sql(|n| format!("${n}")));

/// Runs the prepared [`SAVE_RECORDING`] for `r`.
///
/// # Errors
/// When the statement fails.
pub async fn save_recording_with(
    client: &deadpool_postgres::Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    r: &Recording,
) -> Result<u64, tokio_postgres::Error> {
    let (state, rank) = (r.state as i32, r.rank as i32);
    let (start, end) = (r.start_time.map(to_micros), r.end_time.map(to_micros));
    let (created, updated) = (to_micros(r.create_time), to_micros(r.update_time));
    let params: [&(dyn ToSql + Sync); 27] = [
        &r.id,
        &r.first_sequence,
        &r.last_sequence,
        &state,
        &rank,
        &r.task_over,
        &r.project_id,
        &r.publish_domain,
        &r.app,
        &r.stream,
        &r.record_format,
        &r.task_id,
        &r.job_id,
        &r.download_url,
        &r.asset_id,
        &r.play_url,
        &r.file_size,
        &r.record_duration,
        &start,
        &end,
        &r.width,
        &r.height,
        &r.obs_location,
        &r.obs_bucket,
        &r.obs_object,
        &created,
        &updated,
    ];
    client.execute(stmt, &params).await
}
