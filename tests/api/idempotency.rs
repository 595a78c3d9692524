//! Idempotency over time: a callback that names no occurrence (no task, file or time,
//! such as a RECORD_START without `task_id`) is the same body every time its stream
//! records, so it is a redelivery only within a day; every other callback is one for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{TimeZone, Utc};
use recording_events::config::Settings;
use recording_events::domain::time::Clock;
use recording_events::pb::v1::{VodCallBackReply, VodCallBackRequest};
use serde_json::json;

use crate::helpers::{TestApp, authed, payload_json, spawn_app_with, spawn_postgres_app_with};

/// 2026-11-27T23:59:00Z: a minute before midnight (UTC).
const BEFORE_MIDNIGHT: i64 = 1_795_823_940;
const DAY: i64 = 24 * 3600;

fn on_clock(now: Arc<AtomicI64>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.clock = Clock::from_fn(move || Utc.timestamp_opt(now.load(Ordering::SeqCst), 0).unwrap());
    }
}

/// The sample RECORD_START, with `task_id` as given (none: removed).
fn record_start(task_id: Option<&str>) -> VodCallBackRequest {
    let mut body = payload_json("lifecycle_1_record_start.json");
    match task_id {
        Some(task) => body["task_id"] = json!(task),
        None => {
            body.as_object_mut().unwrap().remove("task_id");
        }
    }
    serde_json::from_value(body).unwrap()
}

async fn send(app: &TestApp, req: VodCallBackRequest) -> (i64, bool) {
    let VodCallBackReply {
        event_id,
        duplicate,
        ..
    } = app
        .grpc()
        .await
        .vod_call_back(authed(req))
        .await
        .unwrap()
        .into_inner();
    (event_id, duplicate)
}

async fn a_callback_naming_no_occurrence_is_one_event_a_day(app: TestApp, now: Arc<AtomicI64>) {
    let bare = || record_start(None);
    assert_eq!(send(&app, bare()).await, (1, false));
    // Redelivered two minutes later, the next day (UTC): the same event.
    now.store(BEFORE_MIDNIGHT + 120, Ordering::SeqCst);
    assert_eq!(send(&app, bare()).await, (1, true));
    // With a task: one event for good.
    assert_eq!(send(&app, record_start(Some("task-a"))).await, (2, false));

    // Two days on, the stream records again: its RECORD_START without a task is a new
    // event, and redelivered, that one; the one with a task is still the same event.
    now.store(BEFORE_MIDNIGHT + 2 * DAY, Ordering::SeqCst);
    assert_eq!(send(&app, bare()).await, (3, false));
    assert_eq!(send(&app, bare()).await, (3, true));
    assert_eq!(send(&app, record_start(Some("task-a"))).await, (2, true));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 3);
}

#[tokio::test]
async fn a_callback_naming_no_occurrence_is_one_event_a_day_on_sqlite() {
    let now = Arc::new(AtomicI64::new(BEFORE_MIDNIGHT));
    let app = spawn_app_with(on_clock(now.clone())).await;
    a_callback_naming_no_occurrence_is_one_event_a_day(app, now).await;
}

#[tokio::test]
async fn a_callback_naming_no_occurrence_is_one_event_a_day_on_postgres() {
    let now = Arc::new(AtomicI64::new(BEFORE_MIDNIGHT));
    let app = spawn_postgres_app_with(on_clock(now.clone())).await;
    a_callback_naming_no_occurrence_is_one_event_a_day(app, now).await;
}
