//! WatchEvents: replay, then live, without gap or duplicate; resumable.

use std::sync::Arc;

use recording_events::pb::v1::{RecordingState, WatchEventsRequest, WatchEventsResponse};
use serde_json::json;
use tonic::Streaming;

use crate::helpers::{TestApp, payload, payload_json, spawn_app};

async fn post_distinct(app: &TestApp, from: usize, to: usize) {
    for i in from..to {
        let mut body = payload_json("seed_example.json");
        body["asset_id"] = json!(format!("asset-{i}"));
        app.post_ok(body.to_string()).await;
    }
}

async fn watch(app: &TestApp, req: WatchEventsRequest) -> Streaming<WatchEventsResponse> {
    app.watch(req).await
}

async fn take(stream: &mut Streaming<WatchEventsResponse>, n: usize) -> Vec<WatchEventsResponse> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
            .await
            .expect("the next event arrives")
            .unwrap()
            .expect("the stream stays open");
        out.push(next);
    }
    out
}

async fn replay_then_live_with_concurrent_writers_has_no_gap_and_no_duplicate(app: TestApp) {
    let app = Arc::new(app);
    post_distinct(&app, 0, 40).await;

    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    // Writers keep going while the watcher replays.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(
                async move { post_distinct(&app, 100 + w * 100, 100 + w * 100 + 20).await },
            )
        })
        .collect();
    let events = take(&mut stream, 100).await;
    for w in writers {
        w.await.unwrap();
    }

    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .all(|e| e.event.as_ref().unwrap().stream == "886_142279")
    );
    assert!(
        events
            .iter()
            .all(|e| e.recording.as_ref().unwrap().state() == RecordingState::Complete)
    );
}

async fn a_watcher_resumes_after_a_disconnect_from_its_cursor(app: TestApp) {
    post_distinct(&app, 0, 10).await;
    let mut first = watch(&app, WatchEventsRequest::default()).await;
    let seen = take(&mut first, 6).await;
    let cursor = seen.last().unwrap().sequence;
    drop(first);

    post_distinct(&app, 10, 15).await;
    let mut resumed = watch(
        &app,
        WatchEventsRequest {
            after_sequence: cursor,
            ..Default::default()
        },
    )
    .await;
    let rest = take(&mut resumed, 9).await;
    post_distinct(&app, 15, 17).await;
    let live = take(&mut resumed, 2).await;

    let all: Vec<i64> = seen
        .iter()
        .chain(&rest)
        .chain(&live)
        .map(|e| e.sequence)
        .collect();
    assert_eq!(all, (1..=17).collect::<Vec<_>>());
}

async fn watch_filters_by_event_type_and_carries_the_recording_state_after_each_event(
    app: TestApp,
) {
    let mut stream = watch(
        &app,
        WatchEventsRequest {
            event_type: "RECORD_NEW_FILE_START".into(),
            ..Default::default()
        },
    )
    .await;
    let mut all = watch(&app, WatchEventsRequest::default()).await;

    for name in [
        "lifecycle_1_record_start.json",
        "lifecycle_2_record_new_file_start.json",
        "lifecycle_3_record_file_complete.json",
        "lifecycle_4_record_over.json",
    ] {
        app.post_ok(payload(name)).await;
    }

    let starts = take(&mut stream, 1).await;
    assert_eq!(starts[0].sequence, 2);
    assert_eq!(
        starts[0].recording.as_ref().unwrap().state(),
        RecordingState::Recording
    );
    let every = take(&mut all, 4).await;
    let kinds: Vec<_> = every
        .iter()
        .map(|e| e.event.as_ref().unwrap().event_type.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "RECORD_START",
            "RECORD_NEW_FILE_START",
            "RECORD_FILE_COMPLETE",
            "RECORD_OVER"
        ]
    );
    assert!(every[0].recording.is_none());
    assert_eq!(
        every[2].recording.as_ref().unwrap().state(),
        RecordingState::Complete
    );
}

#[tokio::test]
async fn a_stored_body_that_no_longer_parses_does_not_stop_the_replay() {
    let app = spawn_app().await;
    post_distinct(&app, 0, 2).await;
    // As if a later version had tightened validation: the first body is now refused.
    rusqlite::Connection::open(&app.db_path)
        .unwrap()
        .execute(
            "UPDATE events SET raw_body = '{\"width\": -1}' WHERE sequence = 1",
            [],
        )
        .unwrap();

    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    let events = take(&mut stream, 2).await;

    assert_eq!(events[0].sequence, 1);
    let first = events[0].event.as_ref().unwrap();
    assert_eq!(
        (
            first.event_type.as_str(),
            first.app.as_str(),
            first.stream.as_str()
        ),
        ("RECORD_FILE_COMPLETE", "live", "886_142279")
    );
    assert!(first.asset_id.is_empty(), "only the columns are known");
    assert_eq!(events[1].sequence, 2);
    assert_eq!(events[1].event.as_ref().unwrap().asset_id, "asset-1");
    // The body itself is left as it is.
    assert_eq!(
        app.text("SELECT raw_body FROM events WHERE sequence = 1")
            .await,
        "{\"width\": -1}"
    );
}

#[tokio::test]
async fn a_stalled_watcher_never_blocks_ingestion_and_catches_up_without_loss() {
    // More events than the live buffer (4096) plus the stream's own buffers, while the
    // watcher reads nothing: ingestion must go on, and the watcher must then get every
    // event, in order, once.
    const TOTAL: usize = 6000;
    let app = Arc::new(spawn_app().await);
    post_distinct(&app, 0, 1).await;
    let mut stalled = watch(&app, WatchEventsRequest::default()).await;
    let first = take(&mut stalled, 1).await;

    let writers: Vec<_> = (0..32)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut client = app.grpc().await;
                for i in 0..TOTAL / 32 + 1 {
                    let mut req = crate::helpers::seed_request();
                    req.asset_id = format!("lag-{w}-{i}");
                    client
                        .vod_call_back(crate::helpers::authed(req))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        tokio::time::timeout(std::time::Duration::from_secs(120), w)
            .await
            .expect("ingestion is not blocked")
            .unwrap();
    }
    let stored = app.count("SELECT count(*) FROM events").await as usize;
    let rest = take(&mut stalled, stored - 1).await;

    let sequences: Vec<i64> = first.iter().chain(&rest).map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=stored as i64).collect::<Vec<_>>());
}

async fn shutdown_ends_open_watch_streams_with_unavailable(mut app: TestApp) {
    post_distinct(&app, 0, 1).await;
    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    take(&mut stream, 1).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown does not wait for watchers");

    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("resume"), "{status:?}");
}

crate::on_both_stores!(
    replay_then_live_with_concurrent_writers_has_no_gap_and_no_duplicate,
    a_watcher_resumes_after_a_disconnect_from_its_cursor,
    watch_filters_by_event_type_and_carries_the_recording_state_after_each_event,
    shutdown_ends_open_watch_streams_with_unavailable,
);
