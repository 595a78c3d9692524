//! Readiness on both fronts: `/readyz` and gRPC health say the same thing, follow the
//! store, turn to not ready as soon as stopping starts, and a stopping server serves on
//! through `--shutdown-delay`.

use std::time::Duration;

use http::Method;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::db_proxy::{DbProxy, Passing};
use crate::helpers::{TestApp, authed, seed_request, spawn_app_with};

const SERVICE: &str = recording_events::pb::v1::recording_event_server::SERVICE_NAME;

/// Asks both fronts until they report `ready` (at most 30 s: the store is asked every
/// 2 s), and returns what `/readyz` last answered.
async fn until_both_report(app: &TestApp, ready: bool) -> crate::helpers::Reply {
    let wanted = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let readyz = tokio::time::timeout(
            Duration::from_secs(30),
            app.request(Method::GET, "/readyz", &[], ""),
        )
        .await
        .expect("/readyz answers within 30 s");
        let grpc = app.grpc_health().await;
        if (readyz.status == 200) == ready && grpc == wanted {
            return readyz;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still /readyz {} and gRPC {grpc:?} after 30 s, waiting for ready = {ready}",
            readyz.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next message of a health `Watch` stream, waited for at most 30 s.
async fn next_status(
    stream: &mut tonic::Streaming<HealthCheckResponse>,
) -> Result<Option<HealthCheckResponse>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("a health watch message within 30 s")
}

/// A health `Watch` of `service` on its own connection, past its first message (SERVING).
async fn serving_watch(app: &TestApp, service: &str) -> tonic::Streaming<HealthCheckResponse> {
    let mut watch = HealthClient::new(app.channel().await)
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_status(&mut watch).await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    watch
}

#[tokio::test]
async fn readiness_follows_the_store_on_both_fronts() {
    let app = spawn_app_with(|_| {}).await;
    let mut watch = serving_watch(&app, "").await;
    until_both_report(&app, true).await;

    // The store stops answering: another process moves a table its check reads away.
    let db = rusqlite::Connection::open(&app.db_path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("ALTER TABLE meta RENAME TO meta_away")
        .unwrap();
    let readyz = until_both_report(&app, false).await;
    readyz.assert_error(503, "UNAVAILABLE", "the store is unavailable");
    assert_eq!(
        next_status(&mut watch).await.unwrap().unwrap().status(),
        ServingStatus::NotServing,
        "a watcher is told"
    );

    db.execute_batch("ALTER TABLE meta_away RENAME TO meta")
        .unwrap();
    until_both_report(&app, true).await;
    assert_eq!(
        next_status(&mut watch).await.unwrap().unwrap().status(),
        ServingStatus::Serving,
        "and told again when it is back"
    );
    app.post_ok(crate::helpers::payload("seed_example.json"))
        .await;
}

#[tokio::test]
async fn a_stopping_server_is_not_ready_but_serves_through_the_shutdown_delay() {
    let mut app = spawn_app_with(|s| s.args.shutdown_delay = Duration::from_secs(600)).await;
    let mut watch = serving_watch(&app, SERVICE).await;

    app.begin_stop();

    assert_eq!(
        next_status(&mut watch).await.unwrap().unwrap().status(),
        ServingStatus::NotServing,
        "a watcher is told at once"
    );
    let readyz = until_both_report(&app, false).await;
    readyz.assert_error(503, "UNAVAILABLE", "the server is shutting down");
    // Everything else is served as before, on new connections too.
    app.request(Method::GET, "/healthz", &[], "")
        .await
        .assert_ok();
    app.post_ok(crate::helpers::payload("seed_example.json"))
        .await;
    let mut other = seed_request();
    other.asset_id = "another-file".into();
    let reply = app
        .grpc()
        .await
        .vod_call_back(authed(other))
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.duplicate);

    // A second signal ends the delay (600 s) at once, and the watch ends with the server.
    let stopped = tokio::time::timeout(Duration::from_secs(60), app.shutdown()).await;
    assert!(stopped.is_ok(), "a second signal ends --shutdown-delay");
    let end = next_status(&mut watch).await;
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test]
async fn a_health_watch_does_not_hold_a_stop() {
    let mut app = spawn_app_with(|s| s.args.shutdown_timeout = Duration::from_secs(600)).await;
    let mut watch = serving_watch(&app, "").await;

    let stopped = tokio::time::timeout(Duration::from_secs(60), app.shutdown()).await;

    assert!(
        stopped.is_ok(),
        "an open health watch held the stop (--shutdown-timeout here: 600 s)"
    );
    assert_eq!(
        next_status(&mut watch).await.unwrap().unwrap().status(),
        ServingStatus::NotServing,
        "the watcher is told before its stream ends"
    );
    assert_eq!(
        next_status(&mut watch).await.unwrap_err().code(),
        Code::Unavailable
    );
}

#[tokio::test]
async fn a_database_that_stops_answering_is_not_ready_on_both_fronts() {
    let proxy = DbProxy::start().await;
    let app = crate::helpers::spawn_postgres_app_with(|s| proxy.route(s)).await;
    app.post_ok(crate::helpers::payload("seed_example.json"))
        .await;
    until_both_report(&app, true).await;

    proxy.set(Passing::Held);
    let readyz = until_both_report(&app, false).await;
    proxy.set(Passing::Through);

    readyz.assert_error(503, "UNAVAILABLE", "the store is unavailable");
    until_both_report(&app, true).await;
}
