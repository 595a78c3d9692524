//! What both fronts refuse or serve is counted in /metrics.

use super::*;

#[tokio::test]
async fn every_refused_callback_is_counted_by_its_code_on_both_fronts() {
    use bytes::Bytes;
    use http_body_util::Full;
    use recording_events::pb::v1::recording_event_client::RecordingEventClient;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let secret = "test-token-0123456789";
    let started = start_with(
        db.to_str().unwrap(),
        &[&format!("--api-token={secret}"), "--max-body-bytes=4096"],
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let send = |content_type: &'static str, bearer: Option<&'static str>, body: String| {
        let mut req = http::Request::post(format!(
            "http://{}{}",
            started.http,
            crate::helpers::CALLBACK
        ))
        .header("content-type", content_type);
        if let Some(bearer) = bearer {
            req = req.header("authorization", format!("Bearer {bearer}"));
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let client = client.clone();
        async move { client.request(req).await.unwrap().status().as_u16() }
    };
    let seed = crate::helpers::payload("seed_example.json");
    let token = Some(secret);
    let statuses = [
        send("application/json", token, seed.clone()).await,
        send("application/json", token, "{\"app\":".into()).await,
        send("application/json", None, seed.clone()).await,
        send(
            "application/json",
            Some("wrong-token-0123456789"),
            seed.clone(),
        )
        .await,
        send("text/plain", token, seed.clone()).await,
        send("application/json", token, format!("{seed:<8192}")).await,
        send("application/json", token, "{\"app\":\"live\"}".into()).await,
    ];
    assert_eq!(statuses, [200, 400, 401, 401, 415, 413, 400]);

    // gRPC: VodCallBack without a token is a refused callback; other calls are not.
    let mut grpc = RecordingEventClient::connect(format!("http://{}", started.grpc))
        .await
        .unwrap();
    let refused = grpc
        .vod_call_back(crate::helpers::seed_request())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let not_a_callback = grpc
        .list_recordings(recording_events::pb::v1::ListRecordingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(not_a_callback.code(), tonic::Code::Unauthenticated);
    // Refused by the service (a missing field), and by tonic before it: a message over the
    // size limit, and one that is not a VodCallBackRequest.
    let authed = |message, token: &str| {
        let mut req = tonic::Request::new(message);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let mut missing = crate::helpers::seed_request();
    missing.app.clear();
    let mut large = crate::helpers::seed_request();
    large.play_url = "x".repeat(8192);
    let codes = [
        grpc.vod_call_back(authed(missing, secret)).await,
        grpc.vod_call_back(authed(large, secret)).await,
    ]
    .map(|r| r.unwrap_err().code());
    assert_eq!(
        codes,
        [tonic::Code::InvalidArgument, tonic::Code::OutOfRange]
    );
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let garbage = http::Request::post(format!(
        "http://{}{}",
        started.grpc,
        recording_events::grpc::VOD_CALLBACK_PATH
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {}", secret))
    // One message frame: not compressed, 3 bytes, not a protobuf message.
    .body(Full::new(Bytes::from_static(&[
        0, 0, 0, 0, 3, 0xff, 0xff, 0xff,
    ])))
    .unwrap();
    let garbage = h2.request(garbage).await.unwrap();
    assert_eq!(garbage.headers()["grpc-status"], "13", "{garbage:?}");

    let metrics = metrics_text(started.http.as_str()).await;
    // Off the test's runtime, which must keep driving the gRPC client's connection: the
    // server's shutdown waits for it to take its GOAWAY.
    let (_, stderr) = tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();
    let counted = |outcome: &str| {
        let key = format!("recording_events_callbacks_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(counted("stored"), 1, "{metrics}");
    assert_eq!(
        counted("invalid_argument"),
        4,
        "bad JSON, a missing field; gRPC: a missing field, not a message"
    );
    assert_eq!(counted("unauthenticated"), 3, "no token, a wrong one, gRPC");
    assert_eq!(counted("unsupported_media_type"), 1);
    assert_eq!(counted("payload_too_large"), 2, "HTTP and gRPC");
    // Logged at the default level (the first; those within the next second only counted).
    let refused = stderr
        .lines()
        .find(|l| l.contains("callback refused"))
        .unwrap_or_else(|| panic!("a refused callback is logged\n{stderr}"));
    assert!(refused.contains("WARN"), "{refused}");
    assert!(refused.contains("app: EOF while parsing"), "{refused}");
    assert!(
        refused.contains("peer=127.0.0.1:"),
        "names the sender: {refused}"
    );
    assert!(refused.contains(" request_id="), "{refused}");
    assert!(!stderr.contains("wrong-token-0123456789"), "{stderr}");
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_status_code() {
    use recording_events::pb::v1::recording_event_client::RecordingEventClient;
    use recording_events::pb::v1::{FindRecordingsRequest, WatchEventsRequest};

    use crate::helpers::authed;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let started = start_with(db.to_str().unwrap(), &["--api-token=test-token-0123456789"]);
    let http = started.http.clone();
    let mut grpc = RecordingEventClient::connect(format!("http://{}", started.grpc))
        .await
        .unwrap();

    let mut watch = grpc
        .watch_events(authed(WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    grpc.vod_call_back(authed(crate::helpers::seed_request()))
        .await
        .unwrap();
    let refused = grpc.vod_call_back(crate::helpers::seed_request()).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    let invalid = grpc
        .find_recordings(authed(FindRecordingsRequest::default()))
        .await;
    assert_eq!(invalid.unwrap_err().code(), tonic::Code::InvalidArgument);
    crate::helpers::health_check(&started.grpc).await.unwrap();
    // A watcher that goes away mid-stream.
    assert_eq!(watch.message().await.unwrap().unwrap().sequence, 1);
    drop(watch);

    let handled = |metrics: &str, method: &str, code: &str| {
        let (method, code) = (format!("method=\"{method}\""), format!("code=\"{code}\""));
        metrics
            .lines()
            .filter(|l| l.starts_with("recording_events_grpc_handled_total{"))
            .filter(|l| l.contains(&method) && l.contains(&code))
            .find_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = metrics_text(http.as_str()).await;
        if handled(&metrics, "WatchEvents", "Cancelled") > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(grpc);
    tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();

    assert_eq!(handled(&metrics, "VodCallBack", "OK"), 1, "{metrics}");
    assert_eq!(handled(&metrics, "VodCallBack", "Unauthenticated"), 1);
    assert_eq!(handled(&metrics, "FindRecordings", "InvalidArgument"), 1);
    assert_eq!(handled(&metrics, "grpc.health.v1.Health/Check", "OK"), 1);
    assert_eq!(handled(&metrics, "WatchEvents", "Cancelled"), 1);
    assert!(
        metrics.contains("recording_events_grpc_handling_seconds_count{method=\"VodCallBack\"} 2"),
        "{metrics}"
    );
}

/// What a client sends and a refusal repeats is logged escaped: a newline cannot start a
/// forged log line, a terminal escape cannot reach the operator's terminal.
#[tokio::test]
async fn a_refusal_repeating_a_newline_or_a_terminal_escape_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let token = "test-token-0123456789";
    let started = start_with(db.to_str().unwrap(), &[&format!("--api-token={token}")]);
    let forged = "2026-11-30T00:00:00.000000Z  INFO recording_events: admin logged in";
    let body = serde_json::json!({
        "project_id": "p", "publish_domain": "d", "event_type": "E", "app": "a",
        "start_time": format!("x\n{forged} \u{1b}[31m"),
    });

    assert_eq!(post(&started.http, token, body.to_string()).await, 400);

    let (_, stderr) = sigterm_and_wait(started);
    assert!(stderr.contains("callback refused"), "{stderr}");
    assert!(
        stderr.contains(&format!("`x\\n{forged} \\u{{1b}}[31m`")),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|line| line.starts_with(forged)),
        "a forged line: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "a raw escape: {stderr}");
}
