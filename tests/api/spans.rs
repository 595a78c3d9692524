//! How far back FindRecordings looks for a file covering an instant: as far as the
//! longest file of that stream (`stream_spans`), kept as files get their times, and made
//! from the stored recordings when a store is upgraded to it.

use recording_events::pb::v1::FindRecordingsRequest;
use serde_json::json;

use crate::helpers::{Backend, TestApp, authed};

const HOUR_US: i64 = 3_600_000_000;

fn completed(stream: &str, job: &str, start: &str, end: &str) -> String {
    json!({
        "project_id": "p1", "publish_domain": "push.example.com", "app": "live",
        "stream": stream, "event_type": "RECORD_FILE_COMPLETE", "job_id": job,
        "record_format": "HLS", "start_time": start, "end_time": end,
    })
    .to_string()
}

/// The jobs FindRecordings finds on `stream` at `at`, each with its offset in seconds.
async fn found_at(app: &TestApp, stream: &str, at: &str) -> Vec<(String, i64)> {
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let req = FindRecordingsRequest {
        stream: stream.into(),
        at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let reply = app.grpc().await.find_recordings(authed(req)).await.unwrap();
    reply
        .into_inner()
        .matches
        .into_iter()
        .map(|m| (m.recording.unwrap().job_id, m.offset.unwrap().seconds))
        .collect()
}

async fn span_of(app: &TestApp, stream: &str) -> i64 {
    app.count(&format!(
        "SELECT max_span_us FROM stream_spans WHERE stream = '{stream}'"
    ))
    .await
}

/// A store from before spans were kept by stream gets them from its recordings when it is
/// upgraded: a ten-hour file is still found nine hours in, and each stream's span is its
/// own longest file's.
async fn an_upgraded_store_still_finds_its_long_files(app: TestApp) {
    app.post_ok(completed(
        "cam_long",
        "long",
        "2026-11-27T00:00:00Z",
        "2026-11-27T10:00:00Z",
    ))
    .await;
    app.post_ok(completed(
        "cam_short",
        "short",
        "2026-11-27T09:00:00Z",
        "2026-11-27T09:10:00Z",
    ))
    .await;
    // The store as a version before spans by stream left it (without the later indexes).
    app.execute(match app.backend {
        Backend::Sqlite => {
            "DROP INDEX recordings_recording; DROP INDEX recordings_failed; \
             DROP INDEX recordings_ended; \
             DROP TABLE stream_spans; PRAGMA user_version = 3;"
        }
        Backend::Postgres { .. } => {
            "DROP INDEX recordings_recording; DROP INDEX recordings_failed; \
             DROP INDEX recordings_ended; \
             DROP TRIGGER recordings_widen_span ON recordings; \
             DROP FUNCTION recordings_widen_span(); DROP TABLE stream_spans; \
             DELETE FROM schema_migrations WHERE version >= 3;"
        }
    })
    .await;

    let app = app.restart().await;

    assert_eq!(
        found_at(&app, "cam_long", "2026-11-27T09:30:00Z").await,
        [("long".to_owned(), 9 * 3600 + 1800)]
    );
    assert_eq!(span_of(&app, "cam_long").await, 10 * HOUR_US);
    assert_eq!(span_of(&app, "cam_short").await, HOUR_US / 6);
    // And kept from then on: a file on a new stream, and a longer one on the short stream.
    app.post_ok(completed(
        "cam_new",
        "new",
        "2026-11-28T00:00:00Z",
        "2026-11-28T02:00:00Z",
    ))
    .await;
    app.post_ok(completed(
        "cam_short",
        "longer",
        "2026-11-28T00:00:00Z",
        "2026-11-28T03:00:00Z",
    ))
    .await;
    assert_eq!(span_of(&app, "cam_new").await, 2 * HOUR_US);
    assert_eq!(span_of(&app, "cam_short").await, 3 * HOUR_US);
    assert_eq!(span_of(&app, "cam_long").await, 10 * HOUR_US);
    assert_eq!(
        found_at(&app, "cam_short", "2026-11-28T02:59:59Z").await,
        [("longer".to_owned(), 3 * 3600 - 1)]
    );
}

crate::on_both_stores!(an_upgraded_store_still_finds_its_long_files);
