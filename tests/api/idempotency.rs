//! Idempotency over time: a callback that names no occurrence (no task, file or time,
//! such as a RECORD_START without `task_id`) is the same body every time its stream
//! records, so it is a redelivery only within a day; every other callback is one for good.
//! And copies of one callback arriving at once (one batch, or two replicas) are one event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{TimeZone, Utc};
use recording_events::config::Settings;
use recording_events::domain::time::Clock;
use recording_events::pb::v1::{VodCallBackReply, VodCallBackRequest};
use serde_json::json;

use crate::helpers::{
    Backend, TestApp, authed, payload_json, spawn_app_with, spawn_postgres_app_with, spawn_replica,
};

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

/// One callback of each kind of identity, about stream `stream`: a file by its job, its
/// asset, its OBS object or its start; a task's start and end; a start naming no
/// occurrence; an event type this build does not know.
fn one_of_each(stream: &str) -> Vec<VodCallBackRequest> {
    let seed = payload_json("seed_example.json");
    let start = payload_json("lifecycle_1_record_start.json");
    let edit = |base: &serde_json::Value, fields: serde_json::Value, drop: &[&str]| {
        let mut body = base.clone();
        body["stream"] = json!(stream);
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        for k in drop {
            body.as_object_mut().unwrap().remove(*k);
        }
        serde_json::from_value::<VodCallBackRequest>(body).unwrap()
    };
    vec![
        edit(&seed, json!({"job_id": format!("job-{stream}")}), &[]),
        edit(&seed, json!({"asset_id": format!("asset-{stream}")}), &[]),
        edit(
            &seed,
            json!({"obs_object": format!("obs/{stream}.flv")}),
            &["asset_id"],
        ),
        edit(
            &seed,
            json!({"event_type": "RECORD_NEW_FILE_START"}),
            &[
                "asset_id",
                "obs_object",
                "download_url",
                "play_url",
                "end_time",
            ],
        ),
        edit(&start, json!({"task_id": format!("task-{stream}")}), &[]),
        edit(
            &start,
            json!({"event_type": "RECORD_OVER", "task_id": format!("task-{stream}")}),
            &[],
        ),
        edit(&start, json!({}), &["task_id"]),
        edit(
            &start,
            json!({"event_type": "RECORD_SNAPSHOT"}),
            &["task_id"],
        ),
    ]
}

/// Copies of one callback arriving at once, each with its own `auth_timestamp` (on
/// PostgreSQL through two replicas): one event each; one copy is told it is new, the
/// others that they are duplicates, all with that event's id.
async fn copies_arriving_at_once_are_one_event(app: TestApp) {
    let replica = match app.backend {
        Backend::Postgres { .. } => Some(spawn_replica(&app).await),
        Backend::Sqlite => None,
    };
    let fronts: Vec<&TestApp> = std::iter::once(&app).chain(&replica).collect();
    let callbacks: Vec<VodCallBackRequest> = (0..6)
        .flat_map(|s| one_of_each(&format!("cam-{s}")))
        .collect();
    const COPIES: usize = 5;
    let fronts = &fronts;
    let sends = callbacks.iter().enumerate().flat_map(|(i, cb)| {
        (0..COPIES).map(move |copy| {
            let mut cb = cb.clone();
            cb.auth_timestamp = Some(1_700_000_000 + copy as i64);
            (i, fronts[(i + copy) % fronts.len()], cb)
        })
    });
    let replies = futures_util::future::join_all(
        sends.map(|(i, front, cb)| async move { (i, send(front, cb).await) }),
    )
    .await;
    for (i, cb) in callbacks.iter().enumerate() {
        let of_it: Vec<(i64, bool)> = replies
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, reply)| *reply)
            .collect();
        let (id, _) = of_it[0];
        assert!(
            of_it.iter().all(|(e, _)| *e == id),
            "{} {}: {of_it:?}",
            cb.event_type,
            cb.stream
        );
        assert_eq!(
            of_it.iter().filter(|(_, duplicate)| !duplicate).count(),
            1,
            "{} {}: {of_it:?}",
            cb.event_type,
            cb.stream
        );
    }
    let stored = app.count("SELECT count(*) FROM events").await;
    assert_eq!(stored, callbacks.len() as i64);
}

crate::on_both_stores!(copies_arriving_at_once_are_one_event);
