//! Column lists shared by the backends: both schemas have the same columns.

/// The columns of `recordings`, in the order the row readers expect.
pub const RECORDING_COLUMNS: &str = "id, first_sequence, last_sequence, state, rank, task_over, \
    project_id, publish_domain, app, stream, record_format, task_id, job_id, download_url, \
    asset_id, play_url, file_size, record_duration, start_time, end_time, width, height, \
    obs_location, obs_bucket, obs_object, create_time, update_time";

/// The columns of `events`, in the order the row readers expect.
pub const EVENT_COLUMNS: &str = "sequence, received_at, event_type, project_id, publish_domain, \
    app, stream, record_format, task_id, job_id, download_url, asset_id, play_url, file_size, \
    record_duration, start_time, end_time, width, height, obs_location, obs_bucket, obs_object, \
    auth_sign, auth_timestamp, recording_state";

/// `columns` with each name prefixed by a table alias, for joins.
pub fn prefixed(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
