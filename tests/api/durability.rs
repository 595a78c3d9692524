//! An acknowledgement means "on disk": across restarts and under concurrency.

use serde_json::json;

use crate::helpers::{TestApp, payload_json, spawn_app};

async fn an_acknowledged_callback_survives_a_restart(app: TestApp) {
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;

    let app = app.restart().await;

    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    // Still idempotent after the restart, and still serving.
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn concurrent_distinct_callbacks_are_all_acknowledged_and_stored() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = payload_json("seed_example.json");
            body["asset_id"] = json!(format!("asset-{i}"));
            app.post_callback(body.to_string()).await
        }));
    }
    for task in tasks {
        task.await.unwrap().assert_ok();
    }

    assert_eq!(app.count("SELECT count(*) FROM events").await, 300);
    assert_eq!(
        app.count("SELECT count(DISTINCT sequence) FROM events")
            .await,
        300
    );
}

#[tokio::test]
async fn a_full_ingest_queue_answers_429_and_loses_nothing_acknowledged() {
    // A queue of one: a burst must overflow it while the writer is busy with a commit.
    let app =
        std::sync::Arc::new(crate::helpers::spawn_app_with(|s| s.args.ingest_queue = 1).await);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut body = payload_json("seed_example.json");
                body["asset_id"] = json!(format!("burst-{i}"));
                app.post_callback(body.to_string()).await
            })
        })
        .collect();
    let (mut ok, mut throttled) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == 200 {
            reply.assert_ok();
            ok += 1;
        } else {
            reply.assert_error(
                429,
                "RESOURCE_EXHAUSTED",
                "too many callbacks waiting to be stored",
            );
            throttled += 1;
        }
    }

    assert!(throttled > 0, "the burst should overflow a queue of one");
    assert_eq!(ok + throttled, 300);
    assert_eq!(app.count("SELECT count(*) FROM events").await, ok);
    // Still serving once the burst is over.
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;
}

crate::on_both_stores!(an_acknowledged_callback_survives_a_restart,);
