//! Several replicas on one PostgreSQL database: every replica sees every replica's
//! callbacks, idempotency holds across them, and sequences stay gap-free.

use std::sync::Arc;
use std::time::Duration;

use recording_events::pb::v1::{FindRecordingsRequest, WatchEventsRequest};
use serde_json::json;

use crate::helpers::{authed, payload_json, spawn_postgres_app, spawn_replica};

#[tokio::test]
async fn a_callback_stored_by_one_replica_is_found_and_watched_on_another() {
    let a = spawn_postgres_app().await;
    let b = spawn_replica(&a).await;
    let mut watch_on_b = b.watch(WatchEventsRequest::default()).await;

    a.post_ok(payload_json("seed_example.json").to_string())
        .await;
    // Redelivered to the other replica: still one event.
    b.post_ok(payload_json("seed_example.json").to_string())
        .await;

    let event = tokio::time::timeout(Duration::from_secs(10), watch_on_b.message())
        .await
        .expect("the event reaches the other replica's watcher")
        .unwrap()
        .unwrap();
    assert_eq!(event.sequence, 1);
    let found = b
        .grpc()
        .await
        .find_recordings(authed(FindRecordingsRequest {
            stream: "886_142279".into(),
            at: Some(prost_types::Timestamp {
                seconds: 1_597_656_790,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.matches.len(), 1);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn concurrent_writes_through_two_replicas_get_gap_free_sequences() {
    let a = Arc::new(spawn_postgres_app().await);
    let b = Arc::new(spawn_replica(&a).await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut body = payload_json("seed_example.json");
            body["asset_id"] = json!(format!("replica-{i}"));
            app.post_ok(body.to_string()).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    assert_eq!(a.count("SELECT count(*) FROM events").await, 200);
    assert_eq!(a.count("SELECT max(sequence) FROM events").await, 200);
    assert_eq!(
        a.count("SELECT count(DISTINCT sequence) FROM events").await,
        200
    );
}
