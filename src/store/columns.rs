//! What the backends share: column lists (both schemas have the same `recordings`
//! columns) and the SQL built per request.

use crate::domain::RecordingState;
use crate::domain::time::to_micros;
use crate::store::ListQuery;

/// The columns of `recordings`, in the order the row readers expect.
pub const RECORDING_COLUMNS: &str = "id, first_sequence, last_sequence, state, rank, task_over, \
    project_id, publish_domain, app, stream, record_format, task_id, job_id, download_url, \
    asset_id, play_url, file_size, record_duration, start_time, end_time, width, height, \
    obs_location, obs_bucket, obs_object, create_time, update_time";

/// The columns of PostgreSQL's `events`, in the order its row reader expects.
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

/// The columns an upsert may change: all but the identity (`id`, `first_sequence`), the
/// scope (project, domain, app, stream) and `create_time`.
const MUTABLE_RECORDING_COLUMNS: &[&str] = &[
    "last_sequence",
    "state",
    "rank",
    "task_over",
    "record_format",
    "task_id",
    "job_id",
    "download_url",
    "asset_id",
    "play_url",
    "file_size",
    "record_duration",
    "start_time",
    "end_time",
    "width",
    "height",
    "obs_location",
    "obs_bucket",
    "obs_object",
    "update_time",
];

/// The columns an event is inserted with, in the order the writers bind them.
const INSERT_EVENT_COLUMNS: &str = "sequence, fingerprint, received_at, event_type, \
    project_id, publish_domain, app, stream, record_format, task_id, job_id, download_url, \
    asset_id, play_url, file_size, record_duration, start_time, end_time, width, height, \
    obs_location, obs_bucket, obs_object, auth_sign, auth_timestamp, recording_id, \
    recording_state, raw_body";

/// `(p1, p2, …)` for the columns of `columns`, in the backend's placeholder dialect.
fn values(columns: &str, placeholder: impl Fn(usize) -> String) -> String {
    let n = columns.split(',').count();
    let list: Vec<String> = (1..=n).map(placeholder).collect();
    format!("({})", list.join(", "))
}

/// The upsert of the recordings `source` yields ([`RECORDING_COLUMNS`] in order): insert,
/// or update their mutable columns in place (`INSERT OR REPLACE` would delete and
/// re-insert each in every index).
fn upsert_recordings(source: &str) -> String {
    let set: Vec<String> = MUTABLE_RECORDING_COLUMNS
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO recordings ({RECORDING_COLUMNS}) {source} ON CONFLICT (id) DO UPDATE SET {}",
        set.join(", ")
    )
}

/// The upsert of a recording, binding [`RECORDING_COLUMNS`] in order.
pub fn save_recording_sql(placeholder: impl Fn(usize) -> String) -> String {
    upsert_recordings(&format!(
        "VALUES {}",
        values(RECORDING_COLUMNS, placeholder)
    ))
}

/// PostgreSQL: `SELECT * FROM unnest($1::t1[], $2::t2[], …)`, the rows of `columns` given
/// as one array per column, of the SQL types `types` (in the columns' order).
fn unnest(columns: &str, types: &[&str]) -> String {
    assert_eq!(
        columns.split(',').count(),
        types.len(),
        "one type per column"
    );
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!("SELECT * FROM unnest({})", arrays.join(", "))
}

/// PostgreSQL: the upsert of a batch's recordings in one statement, each of
/// [`RECORDING_COLUMNS`] bound as an array of its `types` (ids must be distinct: one
/// statement cannot update a row twice).
pub fn save_recordings_sql(types: &[&str]) -> String {
    upsert_recordings(&unnest(RECORDING_COLUMNS, types))
}

/// PostgreSQL: the insert of a batch's events into `events` in one statement, each column
/// (sequence, fingerprint, received_at, event_type, the callback's typed fields,
/// auth_sign, auth_timestamp, recording_id, recording_state, raw_body) bound as an array
/// of its `types`. (SQLite's `events` keeps fewer columns: see its rows.)
pub fn insert_events_sql(types: &[&str]) -> String {
    format!(
        "INSERT INTO events ({INSERT_EVENT_COLUMNS}) {}",
        unnest(INSERT_EVENT_COLUMNS, types)
    )
}

/// That an open file, `r`, begun at `open_start`, is still what its series records at
/// `start`: no next file of the same stream in the same format (one whose format was not
/// sent counting as any) began by then. Each part of the test is an index range.
///
/// A file of the series begun at the same instant is the same file known under another
/// identity (a NEW_FILE_START without `job_id` and its FILE_COMPLETE with only an
/// `asset_id`, or its RECORD_FAILED, which names it by its start), or the same file
/// announced again: it takes the open one's place if it has ended, or failed while the
/// open one did not, or else was announced later — so that exactly one of them is found,
/// whatever the window, and the same one in any order of arrival.
fn not_superseded(start: &str, open_start: &str) -> String {
    let same_series = "n.stream = r.stream AND n.app = r.app \
        AND n.publish_domain = r.publish_domain AND n.project_id = r.project_id \
        AND (n.record_format = r.record_format OR n.record_format = '' OR r.record_format = '')";
    let failed = RecordingState::Failed as i32;
    format!(
        "NOT EXISTS (SELECT 1 FROM recordings n WHERE {same_series} \
           AND n.start_time > {open_start} AND n.start_time <= {start}) \
         AND NOT EXISTS (SELECT 1 FROM recordings n WHERE {same_series} \
           AND n.start_time = {open_start} \
           AND (n.end_time IS NOT NULL \
             OR (n.state = {failed} AND r.state <> {failed}) \
             OR ((n.state = {failed}) = (r.state = {failed}) \
               AND n.first_sequence > r.first_sequence))) \
         AND NOT EXISTS (SELECT 1 FROM recordings n WHERE {same_series} \
           AND n.end_time IS NULL AND n.start_time IS NULL \
           AND n.create_time > {open_start} AND n.create_time <= {start})"
    )
}

/// The SELECT of FindRecordings, binding (1) the stream, (2) the window's start and (3) its
/// end in µs, (4) the app or NULL, (5) the limit; `placeholder(n)` as for
/// [`list_recordings_sql`].
///
/// Closed files: a file overlapping the window began at most the longest span of its
/// stream's files before it (`stream_spans`, kept as files get their times), so the range on
/// `recordings_by_stream_start` is short, and one long file makes only its own stream's
/// range longer.
///
/// Files still recording (no end yet) come from their own partial index and cover from
/// their start to the start of the next file of the same stream in the same format (one
/// stream records one file per format at a time): a file whose FILE_COMPLETE never came
/// must not cover every later instant. A NEW_FILE_START may carry no `start_time` (Huawei
/// sends the file's times with its FILE_COMPLETE): such a file covers from when it was
/// received (`create_time`), and from then on counts as the next file of an older one. A
/// file whose format was not sent is taken to be of any format. A file ENDED by its task's
/// RECORD_OVER before its FILE_COMPLETE came covers up to when that happened
/// (`update_time`): it was recording until then, and nothing of it after.
pub fn find_recordings_sql(placeholder: impl Fn(usize) -> String) -> String {
    let [stream, start, end, app, limit] = [1, 2, 3, 4, 5].map(placeholder);
    let app_filter = |alias: &str| format!("(CAST({app} AS TEXT) IS NULL OR {alias}app = {app})");
    // The two kinds of open file are two branches, each a range of the open files' index.
    let open = |bound: &str, open_start: &str| {
        format!(
            "SELECT {columns}, {open_start} AS begins FROM recordings r \
             WHERE r.stream = {stream} AND r.end_time IS NULL AND {bound} \
               AND (r.state = {recording} OR (r.state = {ended} AND r.update_time > {start})) \
               AND {app} AND {not_superseded}",
            columns = prefixed(RECORDING_COLUMNS, "r"),
            recording = RecordingState::Recording as i32,
            ended = RecordingState::Ended as i32,
            app = app_filter("r."),
            not_superseded = not_superseded(&start, open_start),
        )
    };
    // `begins` orders the matches (after the columns the row readers take).
    format!(
        "SELECT {RECORDING_COLUMNS}, start_time AS begins FROM recordings \
         WHERE stream = {stream} AND start_time < {end} AND end_time > {start} \
           AND start_time >= {start} \
             - coalesce((SELECT max_span_us FROM stream_spans WHERE stream = {stream}), 0) \
           AND {closed_app} \
         UNION ALL {open_started} \
         UNION ALL {open_unstarted} \
         ORDER BY begins, first_sequence LIMIT {limit}",
        closed_app = app_filter(""),
        open_started = open(&format!("r.start_time < {end}"), "r.start_time"),
        open_unstarted = open(
            &format!("r.start_time IS NULL AND r.create_time < {end}"),
            "r.create_time"
        ),
    )
}

/// A value bound to a generated query.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    BigInt(i64),
}

/// Which of a listing's recordings one statement reads, by `first_sequence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListPart {
    /// All that the filters pick.
    All,
    /// Those created after this sequence: the newest, walked newest first.
    After(i64),
    /// Those created up to this sequence, from ranges of every stream's files by start.
    UpTo(i64),
}

/// How many recordings per stream a listing in a window without a stream walks, newest
/// first, before it reads the older ones from each stream's ranges instead: walking one
/// recording costs about a hundredth of reading one stream's ranges (on a million
/// recordings of 1,000 cameras: 50 ns against 5 µs), so a page costs at most about twice
/// the cheaper of the two ways, whatever the window's age. (The ranges read every file the
/// window holds before sorting: a window of weeks across every camera costs what it holds.)
pub const WALK_PER_STREAM: i64 = 100;

/// What [`list_parts`] needs to know of the store ([`LIST_SIZES_SQL`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ListSizes {
    /// The newest recording's `first_sequence` (0 when there is none).
    pub newest: i64,
    /// How many streams have a span: about how many have files.
    pub streams: i64,
    /// When the newest recording was created, µs (0 when there is none).
    pub newest_created: i64,
}

/// The [`ListSizes`], in its fields' order.
pub const LIST_SIZES_SQL: &str = "SELECT \
    coalesce((SELECT max(first_sequence) FROM recordings), 0), \
    (SELECT count(*) FROM stream_spans), \
    coalesce((SELECT create_time FROM recordings ORDER BY first_sequence DESC LIMIT 1), 0)";

/// Whether [`list_parts`] needs [`ListSizes`]: a window without a stream.
pub fn list_may_split(q: &ListQuery) -> bool {
    q.stream.is_none() && q.window_start.is_some() && q.window_end.is_some()
}

/// The statements that list `q`, to run in order until `q.limit` recordings are in hand.
///
/// A window without a stream could walk every recording created after it before finding
/// its files: on a million recordings, 50–80 ms for a window a month back, and a scan of
/// all of them for a window that holds none. So the walk stops after
/// [`WALK_PER_STREAM`] recordings per stream (enough for any recent window), and the older
/// ones come from each stream's ranges by start, as for one stream's window. Unless the
/// window is longer than the time recorded since it: its ranges would then read more
/// files than the walk down to it, and hold them all before sorting (the walk, once at the
/// window, fills its page as it goes).
pub fn list_parts(q: &ListQuery, sizes: ListSizes) -> Vec<ListPart> {
    let (Some(ws), Some(we), true) = (q.window_start, q.window_end, list_may_split(q)) else {
        return vec![ListPart::All];
    };
    let (ws, we) = (to_micros(ws), to_micros(we));
    let top = q
        .before_sequence
        .map_or(sizes.newest, |before| sizes.newest.min(before - 1));
    let floor = top.saturating_sub(WALK_PER_STREAM.saturating_mul(sizes.streams.max(1)));
    if floor > 0 && we.saturating_sub(ws) <= sizes.newest_created.saturating_sub(we) {
        vec![ListPart::After(floor), ListPart::UpTo(floor)]
    } else {
        vec![ListPart::All]
    }
}

/// The SELECT of ListRecordings, of the recordings `part` names. Only the filters present
/// go into the SQL, so each combination gets its own (cached) plan and can use its index.
/// `placeholder(n)` spells the n-th parameter in the backend's dialect (`?n` or `$n`).
pub fn list_recordings_sql(
    q: &ListQuery,
    part: ListPart,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    // The state in the text, not bound: each state gets its own plan, so a rare one can
    // be read from its partial index (`recordings_recording`, `_failed`, `_ended`), which a
    // plan for any bound state could not use.
    if let Some(state) = q.state {
        conds.push(format!("state = {}", state as i32));
    }
    // A condition on one bound value, given the value's placeholder.
    let mut bind = |cond: &dyn Fn(&str) -> String, arg: Arg| {
        args.push(arg);
        conds.push(cond(&placeholder(args.len())));
    };
    for (col, v) in [
        ("project_id =", &q.project_id),
        ("publish_domain =", &q.publish_domain),
        ("app =", &q.app),
        ("stream =", &q.stream),
    ] {
        if let Some(v) = v {
            bind(&|p| format!("{col} {p}"), Arg::Text(v.clone()));
        }
    }
    // As in FindRecordings: a file with no end yet lasts while it is recording, and one
    // ended by its task, or failed, before its times came, until that was received
    // (`update_time`) — either way up to the next file of its stream and format at most.
    // A file with no start yet begins when its first callback was received.
    if let Some(ws) = q.window_start {
        let recording = RecordingState::Recording as i32;
        bind(
            &|p| {
                format!(
                    "coalesce(end_time, CASE WHEN state = {recording} THEN 9223372036854775807 \
                     ELSE update_time END) > {p} \
                     AND (end_time IS NOT NULL OR ({}))",
                    not_superseded(p, "coalesce(r.start_time, r.create_time)")
                )
            },
            Arg::BigInt(to_micros(ws)),
        );
    }
    if let Some(we) = q.window_end {
        bind(
            &|p| format!("coalesce(start_time, create_time) < {p}"),
            Arg::BigInt(to_micros(we)),
        );
    }
    if let Some(before) = q.before_sequence {
        bind(&|p| format!("first_sequence < {p}"), Arg::BigInt(before));
    }
    match part {
        ListPart::All => {}
        ListPart::After(floor) => bind(&|p| format!("first_sequence > {p}"), Arg::BigInt(floor)),
        ListPart::UpTo(floor) => {
            bind(&|p| format!("first_sequence <= {p}"), Arg::BigInt(floor));
            // The ranges' left joins give a row of NULLs for a stream with no file in one.
            conds.push("id IS NOT NULL".to_owned());
        }
    }
    // One stream's window: the candidates come from ranges of its files by start, as in
    // FindRecordings (closed files begun at most the stream's longest span before the
    // window, files with no end yet begun before it, files with no start), not from
    // walking its files newest first down to the window, which read every later file.
    // (Materialized: otherwise the planner merges the ranges in list order, on the index
    // by sequence, walking the files after the window again.)
    let mut sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings r");
    let ranged = q.stream.is_some() || matches!(part, ListPart::UpTo(_));
    if let (Some(ws), Some(we), true) = (q.window_start, q.window_end, ranged) {
        let mut arg = |arg: Arg| {
            args.push(arg);
            placeholder(args.len())
        };
        let (ws, we) = (
            arg(Arg::BigInt(to_micros(ws))),
            arg(Arg::BigInt(to_micros(we))),
        );
        let reach = |stream: &str| {
            format!(
                "{ws} - coalesce((SELECT max_span_us FROM stream_spans \
                 WHERE stream = {stream}), 0)"
            )
        };
        let ranges = |from: &str, stream: &str, reach: &str| {
            format!(
                "SELECT f.* FROM {from} f.stream = {stream} \
                   AND f.start_time >= {reach} AND f.start_time < {we} \
                 UNION ALL SELECT f.* FROM {from} f.stream = {stream} \
                   AND f.end_time IS NULL AND f.start_time < {reach} \
                 UNION ALL SELECT f.* FROM {from} f.stream = {stream} \
                   AND f.start_time IS NULL"
            )
        };
        if let Some(stream) = &q.stream {
            let stream = arg(Arg::Text(stream.clone()));
            sql = format!(
                "WITH r AS MATERIALIZED ({}) SELECT {RECORDING_COLUMNS} FROM r",
                ranges("recordings f WHERE", &stream, &reach(&stream))
            );
        } else if matches!(part, ListPart::UpTo(_)) {
            // Every stream, one index step each (a skip scan), then its ranges. (Left
            // joins: SQLite would otherwise read all of `recordings` first to build a
            // Bloom filter for the join.)
            sql = format!(
                "WITH RECURSIVE streams (stream) AS MATERIALIZED (\
                   SELECT (SELECT stream FROM recordings ORDER BY stream LIMIT 1) \
                   UNION ALL SELECT (SELECT n.stream FROM recordings n \
                     WHERE n.stream > s.stream ORDER BY n.stream LIMIT 1) \
                   FROM streams s WHERE s.stream IS NOT NULL), \
                 reach (stream, since) AS MATERIALIZED (\
                   SELECT s.stream, {} FROM streams s WHERE s.stream IS NOT NULL), \
                 r AS MATERIALIZED ({}) \
                 SELECT {RECORDING_COLUMNS} FROM r",
                reach("s.stream"),
                ranges("reach s LEFT JOIN recordings f ON", "s.stream", "s.since")
            );
        }
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY first_sequence DESC LIMIT {}", q.limit));
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window without a stream is split where the walk stops, unless the walk would cover
    /// everything or the window is longer than the time recorded since it.
    #[test]
    fn a_window_without_a_stream_is_split_only_where_ranges_read_less() {
        let hour = 3_600_000_000;
        let window = |from: i64, to: i64, before: Option<i64>| ListQuery {
            window_start: chrono::DateTime::from_timestamp_micros(from * hour),
            window_end: chrono::DateTime::from_timestamp_micros(to * hour),
            before_sequence: before,
            limit: 21,
            ..ListQuery::default()
        };
        let sizes = ListSizes {
            newest: 10_000,
            streams: 20,
            newest_created: 100 * hour,
        };
        let split = |floor| vec![ListPart::After(floor), ListPart::UpTo(floor)];

        assert_eq!(list_parts(&window(10, 12, None), sizes), split(8_000));
        assert_eq!(
            list_parts(&window(10, 12, Some(5_001)), sizes),
            split(3_000)
        );
        // As long as the time since it: still split; longer: walked.
        assert_eq!(list_parts(&window(0, 50, None), sizes), split(8_000));
        assert_eq!(list_parts(&window(0, 51, None), sizes), [ListPart::All]);
        // The walk would reach the oldest recording first.
        assert_eq!(
            list_parts(&window(10, 12, Some(2_001)), sizes),
            [ListPart::All]
        );
        let few = ListSizes {
            newest: 1_500,
            ..sizes
        };
        assert_eq!(list_parts(&window(10, 12, None), few), [ListPart::All]);
        // With a stream, or without both ends of a window: one statement.
        let of_stream = ListQuery {
            stream: Some("cam".into()),
            ..window(10, 12, None)
        };
        assert_eq!(list_parts(&of_stream, sizes), [ListPart::All]);
        let open_ended = ListQuery {
            window_end: None,
            ..window(10, 12, None)
        };
        assert_eq!(list_parts(&open_ended, sizes), [ListPart::All]);
    }

    #[test]
    fn generated_statements_bind_one_placeholder_per_column() {
        let types = ["bigint"; 28];
        let insert = insert_events_sql(&types);
        assert!(
            insert.ends_with("raw_body) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[], $28::bigint[])"),
            "{insert}"
        );
        let upsert = save_recordings_sql(&types[..27]);
        assert!(upsert.contains("$27::bigint[]) ON CONFLICT (id) DO UPDATE SET"));
        let save = save_recording_sql(|n| format!("?{n}"));
        assert!(save.contains(
            "?27) ON CONFLICT (id) DO UPDATE SET last_sequence = excluded.last_sequence"
        ));
        assert!(!save.contains("first_sequence = excluded") && !save.contains("stream = excluded"));
    }
}
