//! What the backends share: column lists (both schemas have the same columns) and the
//! SQL built per request.

use crate::domain::time::to_micros;
use crate::store::ListQuery;

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

/// A value bound to a generated query.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i32),
    BigInt(i64),
}

/// The SELECT of ListRecordings. Only the filters present go into the SQL, so each
/// combination gets its own (cached) plan and can use its index. `placeholder(n)` spells
/// the n-th parameter in the backend's dialect (`?n` or `$n`).
pub fn list_recordings_sql(
    q: &ListQuery,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut filter = |cond: &str, arg: Arg| {
        args.push(arg);
        conds.push(format!("{cond} {}", placeholder(args.len())));
    };
    for (col, v) in [
        ("project_id =", &q.project_id),
        ("publish_domain =", &q.publish_domain),
        ("app =", &q.app),
        ("stream =", &q.stream),
    ] {
        if let Some(v) = v {
            filter(col, Arg::Text(v.clone()));
        }
    }
    if let Some(state) = q.state {
        filter("state =", Arg::Int(state as i32));
    }
    if let Some(ws) = q.window_start {
        // A recording without an end spans until now.
        filter(
            "coalesce(end_time, 9223372036854775807) >",
            Arg::BigInt(to_micros(ws)),
        );
    }
    if let Some(we) = q.window_end {
        filter("start_time <", Arg::BigInt(to_micros(we)));
    }
    if let Some(before) = q.before_sequence {
        filter("first_sequence <", Arg::BigInt(before));
    }
    if q.window_start.is_some() || q.window_end.is_some() {
        conds.push("start_time IS NOT NULL".into());
    }
    let mut sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY first_sequence DESC LIMIT {}", q.limit));
    (sql, args)
}
