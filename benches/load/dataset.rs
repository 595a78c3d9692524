//! A large store for the query and start-up benchmarks: `n` events and `n` recordings,
//! spread over 1000 streams of hourly files, plus one file of 30 days on a stream of its
//! own, written straight into the service's schema.

use std::path::Path;

/// Microseconds of 2026-01-01T00:00:00Z.
pub const BASE_US: i64 = 1_767_225_600_000_000;
pub const HOUR_US: i64 = 3_600_000_000;
pub const STREAMS: i64 = 1000;

/// Fills a migrated, empty database with `n` events and recordings.
pub fn fill(db: &Path, n: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-200000;",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1)
         INSERT INTO recordings (id, first_sequence, last_sequence, state, rank, task_over,
             project_id, publish_domain, app, stream, record_format, task_id, job_id,
             download_url, asset_id, play_url, file_size, record_duration, start_time, end_time,
             width, height, obs_location, obs_bucket, obs_object, create_time, update_time)
         SELECT printf('rec%08d', i), i + 1, i + 1, 2, 3, 0,
             'p', 'push.example.com', 'live', printf('cam_%04d', i % ?2), 'MP4',
             printf('task%d', i % ?2), printf('job%08d', i),
             printf('https://bucket.obs.example.com/live/cam_%04d/%08d.mp4', i % ?2, i),
             printf('asset%08d', i), '', 734003200, 3600,
             ?3 + (i / ?2) * ?4, ?3 + (i / ?2 + 1) * ?4, 1920, 1080,
             'https://obs.example.com', 'bucket', printf('live/%08d.mp4', i),
             ?3 + (i / ?2 + 1) * ?4, ?3 + (i / ?2 + 1) * ?4
         FROM n",
        rusqlite::params![n, STREAMS, BASE_US, HOUR_US],
    )
    .unwrap();
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1)
         INSERT INTO events (sequence, dedup_group, fingerprint, received_at, event_type, app,
             stream, recording_id, recording_state, raw_body)
         SELECT i + 1, i + 1, randomblob(32), ?3, 'RECORD_FILE_COMPLETE', 'live',
             printf('cam_%04d', i % ?2), printf('rec%08d', i), 2,
             printf('{\"pad\":\"%.900c\"}', 'x')
         FROM n",
        rusqlite::params![n, STREAMS, BASE_US],
    )
    .unwrap();
    // One file of 30 days on a stream of its own (an HLS recording merged across breaks):
    // it must not lengthen the other streams' lookups. Each file was received when it
    // ended (`create_time`), this one last.
    tx.execute(
        "INSERT INTO recordings (id, first_sequence, last_sequence, state, rank, task_over,
             project_id, publish_domain, app, stream, record_format, task_id, job_id,
             download_url, asset_id, play_url, start_time, end_time, obs_location,
             obs_bucket, obs_object, create_time, update_time)
         VALUES ('rec_long', ?1, ?1, 2, 3, 0, 'p', 'push.example.com', 'live', 'cam_long',
             'HLS', '', 'job_long', '', '', '', ?2, ?2 + 720 * ?3, '', '', '', ?4, ?4)",
        rusqlite::params![
            n + 1,
            BASE_US,
            HOUR_US,
            BASE_US + (n / STREAMS + 1) * HOUR_US
        ],
    )
    .unwrap();
    // Each stream's longest span, and the longest of all, as the writer keeps them.
    tx.execute_batch(
        "INSERT INTO stream_spans (stream, max_span_us)
         SELECT stream, max(end_time - start_time) FROM recordings GROUP BY stream;
         UPDATE meta SET value = (SELECT max(max_span_us) FROM stream_spans)
         WHERE key = 'max_span_us';",
    )
    .unwrap();
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .unwrap();
}
