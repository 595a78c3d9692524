//! What waits in a replica, as /metrics shows it: its pooled PostgreSQL connections, and
//! the callbacks queued for its writer.

use std::time::{Duration, Instant};

use recording_events::pb::v1::recording_event_client::RecordingEventClient;
use recording_events::store::postgres::TAKE_APPEND_LOCK;

use super::*;
use crate::database_stalls::waiting_on_recordings;
use crate::helpers::{alarm_lookup, authed, connect, fresh_schema, schema_url, seed_with_asset};
use crate::replicas::until_someone_waits_behind;

const MAX: &str = "recording_events_store_pool_max_connections";
const IN_USE: &str = "recording_events_store_pool_connections{state=\"in_use\"}";
const IDLE: &str = "recording_events_store_pool_connections{state=\"idle\"}";

/// The value of the sample `name` (with its labels, if any) in a metrics text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_pooled_connections_in_use_idle_and_allowed_are_in_the_metrics() {
    let url = schema_url(&fresh_schema().await);
    let started = start_by(
        Command::new(env!("CARGO_BIN_EXE_recording-events")),
        &url,
        &[
            "--api-token=test-token-0123456789",
            "--database-pool-size=3",
        ],
    );
    assert_eq!(post_seed(&started.http, "test-token-0123456789").await, 200);
    // The writer hands its connection back just after answering: quiet, soon.
    let mut quiet = String::new();
    for _ in 0..100 {
        quiet = metrics_text(started.http.as_str()).await;
        if sample(&quiet, IN_USE) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Two lookups held behind an operator's lock: each holds a pooled connection.
    let operator = connect(&url).await;
    operator
        .batch_execute("BEGIN; LOCK TABLE recordings IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let grpc = RecordingEventClient::connect(format!("http://{}", started.grpc))
        .await
        .unwrap();
    let lookups: Vec<_> = (0..2)
        .map(|_| {
            let mut grpc = grpc.clone();
            tokio::spawn(async move { grpc.find_recordings(authed(alarm_lookup())).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_on_recordings(&operator).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the lookups never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = metrics_text(started.http.as_str()).await;
    operator.batch_execute("COMMIT").await.unwrap();
    for lookup in lookups {
        let found = lookup
            .await
            .unwrap()
            .expect("served once the table is free");
        assert_eq!(found.into_inner().matches.len(), 1);
    }
    drop(grpc);
    tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();

    assert_eq!(sample(&quiet, MAX), Some(3.0), "{quiet}");
    assert_eq!(sample(&quiet, IN_USE), Some(0.0), "{quiet}");
    assert!(sample(&quiet, IDLE).is_some_and(|n| n >= 1.0), "{quiet}");
    assert_eq!(sample(&busy, MAX), Some(3.0));
    assert!(
        sample(&busy, IN_USE).is_some_and(|n| n >= 2.0),
        "two lookups wait, each on a connection: {busy}"
    );
    assert_eq!(
        sample(&busy, "recording_events_store_pool_waiting"),
        Some(0.0)
    );
}

#[tokio::test]
async fn callbacks_waiting_for_the_writer_are_in_the_metrics() {
    const QUEUE_DEPTH: &str = "recording_events_store_queue_depth";
    let url = schema_url(&fresh_schema().await);
    let token = "test-token-0123456789";
    let started = start_by(
        Command::new(env!("CARGO_BIN_EXE_recording-events")),
        &url,
        &["--api-token=test-token-0123456789", "--ingest-queue=64"],
    );
    let quiet = metrics_text(started.http.as_str()).await;

    // The writer's transaction waits for the append lock another session holds: the one
    // callback it took waits with it, the next ones wait in the queue.
    let holder = connect(&url).await;
    holder
        .batch_execute(&format!(
            "BEGIN; {}; SET LOCAL idle_in_transaction_session_timeout = 0",
            *TAKE_APPEND_LOCK
        ))
        .await
        .unwrap();
    let http = started.http.clone();
    let send = |n: usize| {
        let http = http.clone();
        tokio::spawn(
            async move { post(&http, token, seed_with_asset(&format!("queued-{n}"))).await },
        )
    };
    let mut sent = vec![send(0)];
    until_someone_waits_behind(&holder).await;
    sent.extend((1..=5).map(send));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut busy = metrics_text(started.http.as_str()).await;
    while sample(&busy, QUEUE_DEPTH) != Some(5.0) {
        assert!(
            Instant::now() < deadline,
            "five callbacks never queued: {busy}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        busy = metrics_text(started.http.as_str()).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    for reply in sent {
        assert_eq!(reply.await.unwrap(), 200, "stored once the lock is free");
    }
    let after = metrics_text(started.http.as_str()).await;
    tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();

    assert_eq!(sample(&quiet, QUEUE_DEPTH), Some(0.0), "{quiet}");
    assert_eq!(
        sample(&quiet, "recording_events_store_queue_capacity"),
        Some(64.0)
    );
    assert_eq!(sample(&after, QUEUE_DEPTH), Some(0.0), "{after}");
}

/// A database whose sessions would not wait for the disk: the service's sessions do (and
/// it says so once); callbacks are acknowledged and stored.
#[tokio::test]
async fn a_database_with_synchronous_commit_off_still_gets_durable_commits() {
    let url = format!(
        "{}%20-c%20synchronous_commit%3Doff",
        schema_url(&fresh_schema().await)
    );
    let started = start_by(
        Command::new(env!("CARGO_BIN_EXE_recording-events")),
        &url,
        &["--api-token=test-token-0123456789"],
    );
    assert_eq!(post_seed(&started.http, "test-token-0123456789").await, 200);
    let (_, stderr) = sigterm_and_wait(started);
    assert_eq!(
        stderr
            .matches("synchronous_commit is off for this database, role or URL")
            .count(),
        1,
        "said once: {stderr}"
    );
    assert_eq!(
        connect(&url)
            .await
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}
