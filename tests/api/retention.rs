//! Retention (`--retention`): old events, the recordings none of whose events is left,
//! and what WatchEvents and new callbacks see afterwards. Both stores; the service's clock
//! is moved forward instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use recording_events::config::Settings;
use recording_events::domain::time::Clock;
use recording_events::pb::v1::{
    GetRecordingRequest, ListRecordingsRequest, RecordingState, VodCallBackReply,
    VodCallBackRequest, WatchEventsRequest,
};
use serde_json::json;
use tonic::Code;

use crate::helpers::{TestApp, authed, payload_json, spawn_app_with, spawn_postgres_app_with};

/// 2026-11-27T10:00:00Z, when the first callbacks arrive.
const DAY_ONE: i64 = 1_795_773_600;
const DAY: i64 = 24 * 3600;

/// Retention of one day, run every 50 ms, on a clock the test moves.
fn with_retention(now: Arc<AtomicI64>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.args.retention = Some(Duration::from_secs(DAY as u64));
        s.args.retention_every = Duration::from_millis(50);
        s.clock = Clock::from_fn(move || Utc.timestamp_opt(now.load(Ordering::SeqCst), 0).unwrap());
    }
}

/// A lifecycle payload for file `job` of task `task`.
fn event(name: &str, task: &str, job: Option<&str>) -> VodCallBackRequest {
    let mut body = payload_json(name);
    body["task_id"] = json!(task);
    if let Some(job) = job {
        body["job_id"] = json!(job);
    }
    serde_json::from_value(body).unwrap()
}

const START: &str = "lifecycle_2_record_new_file_start.json";
const COMPLETE: &str = "lifecycle_3_record_file_complete.json";
const OVER: &str = "lifecycle_4_record_over.json";

async fn send(app: &TestApp, req: VodCallBackRequest) -> VodCallBackReply {
    app.grpc()
        .await
        .vod_call_back(authed(req))
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for_events(app: &TestApp, n: i64) {
    for _ in 0..200 {
        if app.count("SELECT count(*) FROM events").await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("retention did not leave {n} events");
}

async fn first_watched(app: &TestApp, after_sequence: i64) -> Result<i64, tonic::Status> {
    let mut stream = app
        .grpc()
        .await
        .watch_events(authed(WatchEventsRequest {
            after_sequence,
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(stream.message().await?.expect("an event").sequence)
}

async fn old_events_and_their_recordings_are_removed(app: TestApp, now: Arc<AtomicI64>) {
    // Day one: file a completed; file b ended by its task's RECORD_OVER; file c started.
    let a = send(&app, event(START, "task-1", Some("a"))).await;
    send(&app, event(COMPLETE, "task-1", Some("a"))).await;
    let b = send(&app, event(START, "task-1", Some("b"))).await;
    send(&app, event(OVER, "task-1", None)).await;
    let c = send(&app, event(START, "task-2", Some("c"))).await;
    // Two days later: file c completes, file d starts. Retention removes day one's events,
    // files a and b with them; file c stays, as its last event is recent.
    now.store(DAY_ONE + 2 * DAY, Ordering::SeqCst);
    send(&app, event(COMPLETE, "task-2", Some("c"))).await;
    let d = send(&app, event(START, "task-2", Some("d"))).await;
    wait_for_events(&app, 2).await;

    let mut client = app.grpc().await;
    for gone in [&a.recording_id, &b.recording_id] {
        let status = client
            .get_recording(authed(GetRecordingRequest { id: gone.clone() }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{gone}: {status:?}");
    }
    let listed = client
        .list_recordings(authed(ListRecordingsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .recordings;
    let listed: Vec<(&str, RecordingState)> =
        listed.iter().map(|r| (r.id.as_str(), r.state())).collect();
    assert_eq!(
        listed,
        [
            (d.recording_id.as_str(), RecordingState::Recording),
            (c.recording_id.as_str(), RecordingState::Complete),
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM tasks_over").await, 0);

    // WatchEvents: from the start means from the oldest event kept; a cursor into what
    // was removed is refused, one just before what is kept is fine.
    assert_eq!(first_watched(&app, 0).await.unwrap(), 6);
    assert_eq!(first_watched(&app, 5).await.unwrap(), 6);
    let refused = first_watched(&app, 2).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("the events after 2 up to 5 were removed by retention"),
        "{refused:?}"
    );

    // Sequences are never reused, even once everything is removed and after a restart.
    now.store(DAY_ONE + 10 * DAY, Ordering::SeqCst);
    wait_for_events(&app, 0).await;
    let app = app.restart().await;
    let next = send(&app, event(START, "task-3", Some("e"))).await;
    assert_eq!(next.event_id, 8);
    assert_eq!(first_watched(&app, 7).await.unwrap(), 8);
}

async fn a_file_ended_by_its_task_goes_with_the_task_end(app: TestApp, now: Arc<AtomicI64>) {
    let b = send(&app, event(START, "task-1", Some("b"))).await;
    now.store(DAY_ONE + DAY / 2, Ordering::SeqCst);
    send(&app, event(OVER, "task-1", None)).await;
    // The file's start is due, its task's end (its last event) is not: the file stays.
    now.store(DAY_ONE + DAY + 3600, Ordering::SeqCst);
    wait_for_events(&app, 1).await;
    let mut client = app.grpc().await;
    let kept = client
        .get_recording(authed(GetRecordingRequest {
            id: b.recording_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.state(), RecordingState::Ended);
    // Then the task's end is due: the file goes with it.
    now.store(DAY_ONE + 2 * DAY, Ordering::SeqCst);
    wait_for_events(&app, 0).await;
    let gone = client
        .get_recording(authed(GetRecordingRequest { id: b.recording_id }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(app.count("SELECT count(*) FROM tasks_over").await, 0);
}

/// For each scenario `async fn name(app, now)`, a module `name` with `on_sqlite` and
/// `on_postgres`, each on an app with [`with_retention`] and its clock at [`DAY_ONE`].
macro_rules! on_both_stores_with_a_clock {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;

                #[tokio::test]
                async fn on_sqlite() {
                    let now = Arc::new(AtomicI64::new(DAY_ONE));
                    let app = spawn_app_with(with_retention(now.clone())).await;
                    super::$scenario(app, now).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    let now = Arc::new(AtomicI64::new(DAY_ONE));
                    let app = spawn_postgres_app_with(with_retention(now.clone())).await;
                    super::$scenario(app, now).await;
                }
            }
        )*
    };
}

on_both_stores_with_a_clock!(
    old_events_and_their_recordings_are_removed,
    a_file_ended_by_its_task_goes_with_the_task_end,
);

#[tokio::test]
async fn without_retention_nothing_is_removed() {
    let now = Arc::new(AtomicI64::new(DAY_ONE));
    let app = spawn_app_with(|s| {
        with_retention(now.clone())(s);
        s.args.retention = None;
    })
    .await;
    send(&app, event(START, "task-1", Some("a"))).await;
    now.store(DAY_ONE + 400 * DAY, Ordering::SeqCst);
    send(&app, event(START, "task-1", Some("b"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    assert_eq!(first_watched(&app, 0).await.unwrap(), 1);
}

#[tokio::test]
async fn a_zero_retention_or_interval_is_refused_at_start() {
    use recording_events::startup::Application;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    for (retention, every, expected) in [
        (0, 600, "--retention: must be longer than 0"),
        (3600, 0, "--retention-every: must be longer than 0"),
    ] {
        let mut settings = Settings::for_tests(&url, crate::helpers::TOKEN);
        settings.args.retention = Some(Duration::from_secs(retention));
        settings.args.retention_every = Duration::from_secs(every);
        let error = Application::build(settings).await.err().expect("refused");
        assert!(format!("{error:#}").contains(expected), "{error:#}");
    }
}
