//! The vodCallBack over HTTP/JSON: the envelope, tolerance, and every rejection.

use http::Method;
use serde_json::json;

use recording_events::pb::v1::{
    FindRecordingsRequest, GetRecordingRequest, ListRecordingsRequest, WatchEventsRequest,
};
use tonic::Code;

use crate::helpers::{
    CALLBACK, TOKEN, TestApp, authed, payload, payload_json, seed_request, spawn_app,
};

async fn seed_example_is_acknowledged_and_stored_with_its_raw_body(app: TestApp) {
    let reply = app.post_callback(payload("seed_example.json")).await;

    reply.assert_ok();
    let ts = reply.body["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok(),
        "{ts}"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(
        app.count("SELECT file_size FROM recordings WHERE stream = '886_142279'")
            .await,
        33_406_499
    );
    let raw = app.text("SELECT raw_body FROM events").await;
    assert_eq!(raw, payload("seed_example.json"));
}

#[tokio::test]
async fn huawei_type_drift_is_tolerated_and_unknown_fields_are_kept() {
    let app = spawn_app().await;
    let mut body = payload_json("seed_example.json");
    body.as_object_mut().unwrap().remove("height");
    body["heigh"] = json!(480);
    body["file_size"] = json!("5000000000");
    // A media duration measured to the hundredth: rounded, the exact value kept.
    body["record_duration"] = json!(402.6);
    body["width"] = json!("854.0");
    body["play_url"] = json!(null);
    body["obs_location"] = json!(null);
    body["vendor_extra"] = json!({"nested": true});
    body["auth_timestamp"] = json!("1795770000");

    let reply = app.post_callback(body.to_string()).await;

    reply.assert_ok();
    assert_eq!(app.count("SELECT width FROM recordings").await, 854);
    assert_eq!(app.count("SELECT height FROM recordings").await, 480);
    assert_eq!(
        app.count("SELECT file_size FROM recordings").await,
        5_000_000_000
    );
    assert_eq!(
        app.count("SELECT count(*) FROM recordings WHERE play_url = ''")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE raw_body LIKE '%vendor_extra%'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT record_duration FROM recordings").await,
        403
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE raw_body LIKE '%\"record_duration\":402.6%'")
            .await,
        1
    );
    // The event as WatchEvents replays it (read back from the stored body) has the same
    // tolerated values.
    let mut replay = app.watch(WatchEventsRequest::default()).await;
    let event = replay.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!(
        (
            event.width,
            event.height,
            event.file_size,
            event.record_duration
        ),
        (Some(854), Some(480), Some(5_000_000_000), Some(403))
    );
    assert_eq!(
        (event.play_url.as_str(), event.auth_timestamp),
        ("", Some(1_795_770_000))
    );
}

#[tokio::test]
async fn content_type_with_charset_or_missing_is_accepted() {
    let app = spawn_app().await;
    let auth = format!("Bearer {TOKEN}");
    let mut body = payload_json("seed_example.json");

    let with_charset = app
        .request(
            Method::POST,
            CALLBACK,
            &[
                ("content-type", "application/json; charset=UTF-8"),
                ("authorization", &auth),
            ],
            body.to_string(),
        )
        .await;
    body["asset_id"] = json!("another-file");
    let without = app
        .request(
            Method::POST,
            CALLBACK,
            &[("authorization", &auth)],
            body.to_string(),
        )
        .await;

    with_charset.assert_ok();
    without.assert_ok();
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn a_body_after_a_byte_order_mark_is_accepted_and_kept_without_it() {
    let app = spawn_app().await;
    let seed = payload("seed_example.json");

    let with_bom = app.post_callback(format!("\u{feff}{seed}")).await;
    let again_without = app.post_callback(seed.clone()).await;

    with_bom.assert_ok();
    again_without.assert_ok();
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.text("SELECT raw_body FROM events").await, seed);
}

#[tokio::test]
async fn unknown_event_type_is_accepted_and_kept() {
    let app = spawn_app().await;
    let mut body = payload_json("seed_example.json");
    body["event_type"] = json!("RECORD_SNAPSHOT_TAKEN");

    app.post_ok(body.to_string()).await;

    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'RECORD_SNAPSHOT_TAKEN'")
            .await,
        1
    );
}

#[tokio::test]
async fn missing_or_blank_required_fields_are_rejected_with_400_naming_the_field() {
    let app = spawn_app().await;
    for field in ["project_id", "publish_domain", "event_type", "app"] {
        for value in [None, Some(json!("")), Some(json!("   ")), Some(json!(null))] {
            let mut body = payload_json("seed_example.json");
            match &value {
                None => {
                    body.as_object_mut().unwrap().remove(field);
                }
                Some(v) => body[field] = v.clone(),
            }

            let reply = app.post_callback(body.to_string()).await;

            reply.assert_error(
                400,
                "INVALID_ARGUMENT",
                &format!("{field}: is required and must not be empty"),
            );
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    // The server keeps serving.
    app.post_ok(payload("seed_example.json")).await;
}

#[tokio::test]
async fn malformed_bodies_are_rejected_with_400() {
    let app = spawn_app().await;
    let cases: &[(&str, &str)] = &[
        ("", "body: is empty"),
        ("   ", "body: is empty"),
        ("{\"project_id\": ", "project_id: EOF while parsing"),
        ("<xml/>", "body: expected value"),
        ("[1,2]", "body: is an array; expected a JSON object"),
        ("null", "body: is null; expected a JSON object"),
        ("{} trailing", "body: trailing characters"),
        (r#"{"app": "live",}"#, "body: trailing comma"),
        (
            r#"{"app": 12}"#,
            "app: invalid type: integer `12`, expected a string",
        ),
        (r#"{"file_size": "big"}"#, "file_size: invalid value"),
        (r#"{"width": 1.5}"#, "width: invalid value"),
        (r#"{"height": true}"#, "height: invalid type: boolean"),
        (
            r#"{"start_time": "yesterday"}"#,
            "start_time: `yesterday` is not an RFC 3339 time",
        ),
        (r#"{"file_size": 99999999999999999999}"#, "file_size: "),
    ];
    for (body, message) in cases {
        let reply = app.post_callback(body.to_string()).await;
        reply.assert_error(400, "INVALID_ARGUMENT", message);
    }
    app.post_ok(payload("seed_example.json")).await;
}

#[tokio::test]
async fn a_refusal_quoting_a_huge_value_keeps_its_start_and_reason_and_cuts_the_middle() {
    let app = spawn_app().await;
    let huge = "9".repeat(20_000);
    for (field, reason) in [
        ("start_time", "is not an RFC 3339 time"),
        ("file_size", "expected an integer or a numeric string"),
    ] {
        let mut body = payload_json("seed_example.json");
        body[field] = json!(format!("x{huge}"));

        let reply = app.post_callback(body.to_string()).await;

        reply.assert_error(400, "INVALID_ARGUMENT", &format!("{field}: "));
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.len() <= 700, "{} bytes", message.len());
        assert!(message.contains(" bytes cut) …"), "{message}");
        assert!(message.contains(reason), "{message}");
        assert!(message.contains(" at line 1 column "), "{message}");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn negative_numbers_and_reversed_times_are_rejected_with_400() {
    let app = spawn_app().await;
    for field in ["file_size", "record_duration", "width", "height"] {
        let mut body = payload_json("seed_example.json");
        body[field] = json!(-1);
        app.post_callback(body.to_string()).await.assert_error(
            400,
            "INVALID_ARGUMENT",
            &format!("{field}: must not be negative"),
        );
    }
    let mut body = payload_json("seed_example.json");
    body["end_time"] = json!("2020-08-17T09:00:00Z");
    app.post_callback(body.to_string()).await.assert_error(
        400,
        "INVALID_ARGUMENT",
        "end_time: must not be before start_time",
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn times_with_offsets_and_fractions_are_accepted() {
    let app = spawn_app().await;
    let mut body = payload_json("seed_example.json");
    body["start_time"] = json!("2020-08-17T17:30:16.250+08:00");
    body["end_time"] = json!("2020-08-17T09:37:06Z");

    app.post_ok(body.to_string()).await;

    // 09:30:16.250 UTC in µs.
    assert_eq!(
        app.count("SELECT start_time FROM recordings").await,
        1_597_656_616_250_000
    );
}

#[tokio::test]
async fn wrong_content_type_gets_415() {
    let app = spawn_app().await;
    let auth = format!("Bearer {TOKEN}");
    let reply = app
        .request(
            Method::POST,
            CALLBACK,
            &[("content-type", "text/plain"), ("authorization", &auth)],
            payload("seed_example.json"),
        )
        .await;
    reply.assert_error(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "content-type: expected application/json",
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_gzip_body_is_stored_decompressed_and_other_encodings_get_415() {
    let app = spawn_app().await;
    let auth = format!("Bearer {TOKEN}");
    let seed = payload("seed_example.json");
    let post = |encoding: &'static str, body: Vec<u8>| {
        let headers = [
            ("content-type", "application/json"),
            ("content-encoding", encoding),
            ("authorization", auth.as_str()),
        ];
        let app = &app;
        async move { app.request(Method::POST, CALLBACK, &headers, body).await }
    };

    let gzipped = post("gzip", gzip(seed.as_bytes())).await;
    let brotli = post("br", gzip(seed.as_bytes())).await;
    let garbled = post("gzip", seed.clone().into_bytes()).await;
    let mut bomb = payload_json("seed_example.json");
    bomb["padding"] = json!("x".repeat(70 * 1024));
    let bomb = gzip(bomb.to_string().as_bytes());
    assert!(bomb.len() < 64 * 1024, "the bomb itself is under the limit");
    let bomb = post("gzip", bomb).await;

    gzipped.assert_ok();
    brotli.assert_error(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "content-encoding: `br` is not supported",
    );
    garbled.assert_error(400, "INVALID_ARGUMENT", "body: is not valid gzip");
    bomb.assert_error(
        413,
        "PAYLOAD_TOO_LARGE",
        "body: larger than the limit of 65536 bytes once decompressed",
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.text("SELECT raw_body FROM events").await, seed);
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow_and_unknown_path_gets_404() {
    let app = spawn_app().await;

    let get = app.request(Method::GET, CALLBACK, &[], "").await;
    let put = app.request(Method::PUT, CALLBACK, &[], "").await;
    let unknown = app
        .request(Method::POST, "/openapi/v1/nope", &[], "{}")
        .await;
    let two_slashes = app
        .request(Method::POST, &format!("{CALLBACK}//"), &[], "{}")
        .await;

    get.assert_error(405, "METHOD_NOT_ALLOWED", "method: GET is not allowed");
    assert_eq!(get.headers["allow"], "POST");
    put.assert_error(405, "METHOD_NOT_ALLOWED", "method: PUT is not allowed");
    unknown.assert_error(404, "NOT_FOUND", "path: no route for /openapi/v1/nope");
    two_slashes.assert_error(404, "NOT_FOUND", "path: no route for");
    // One trailing slash too many (a typo in Huawei's console) is still the callback.
    let with_slash = app
        .request(Method::GET, &format!("{CALLBACK}/"), &[], "")
        .await;
    with_slash.assert_error(405, "METHOD_NOT_ALLOWED", "method: GET is not allowed");
    let auth = format!("Bearer {TOKEN}");
    app.request(
        Method::POST,
        &format!("{CALLBACK}/"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        payload("seed_example.json"),
    )
    .await
    .assert_ok();
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    let app = spawn_app().await;
    let mut body = payload_json("seed_example.json");
    body["padding"] = json!("x".repeat(70 * 1024));

    let reply = app.post_callback(body.to_string()).await;

    reply.assert_error(
        413,
        "PAYLOAD_TOO_LARGE",
        "body: larger than the limit of 65536 bytes",
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn missing_malformed_or_wrong_token_gets_401_with_www_authenticate() {
    let app = spawn_app().await;
    let cases: &[(Option<&str>, &str)] = &[
        (None, "authorization: missing"),
        (
            Some("Bearer wrong-token"),
            "authorization: the bearer token is not valid",
        ),
        (
            Some("Basic dXNlcjpwYXNz"),
            "authorization: expected `Bearer <token>`",
        ),
        (Some("Bearer"), "authorization: expected `Bearer <token>`"),
    ];
    for (header, message) in cases {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(h) = header {
            headers.push(("authorization", h));
        }
        let reply = app
            .request(
                Method::POST,
                CALLBACK,
                &headers,
                payload("seed_example.json"),
            )
            .await;
        reply.assert_error(401, "UNAUTHENTICATED", message);
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

async fn redelivery_with_a_new_signature_is_acknowledged_and_stored_once(app: TestApp) {
    let first = payload_json("signed_md5.json");
    let mut again = first.clone();
    again["auth_timestamp"] = json!(1795770060);
    again["auth_sign"] = json!("00112233445566778899aabbccddeeff");
    let mut other_file = first.clone();
    other_file["job_id"] = json!("job-0002");

    app.post_ok(first.to_string()).await;
    app.post_ok(again.to_string()).await;
    app.post_ok(first.to_string()).await;
    app.post_ok(other_file.to_string()).await;

    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn health_endpoints_answer_without_a_token() {
    let app = spawn_app().await;

    let healthz = app.request(Method::GET, "/healthz", &[], "").await;
    let readyz = app.request(Method::GET, "/readyz", &[], "").await;
    let post = app.request(Method::POST, "/readyz", &[], "").await;

    assert_eq!(healthz.status, 200);
    assert_eq!(readyz.status, 200);
    assert_eq!(readyz.body["data"], "ready");
    post.assert_error(405, "METHOD_NOT_ALLOWED", "method: POST");
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

/// PostgreSQL's text cannot hold U+0000: every front refuses it by name, on both stores,
/// instead of a store error that says "retry later".
async fn text_with_a_nul_character_is_refused_by_name_everywhere(app: TestApp) {
    let mut body = payload_json("seed_example.json");
    body["obs_object"] = json!("record/a\0b.mp4");
    let http = app.post_callback(body.to_string()).await;
    let mut grpc = app.grpc().await;
    let mut sent = seed_request();
    sent.stream = "886\0".into();
    let callback = grpc.vod_call_back(authed(sent)).await.unwrap_err();
    let get = grpc
        .get_recording(authed(GetRecordingRequest { id: "a\0".into() }))
        .await
        .unwrap_err();
    let list = grpc
        .list_recordings(authed(ListRecordingsRequest {
            publish_domain: "\0".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let find = grpc
        .find_recordings(authed(FindRecordingsRequest {
            stream: "886_142279".into(),
            app: "live\0".into(),
            at: seed_request().start_time,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let watch = grpc
        .watch_events(authed(WatchEventsRequest {
            event_type: "\0".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    let nul = "must not contain a NUL character (U+0000)";
    http.assert_error(400, "INVALID_ARGUMENT", &format!("obs_object: {nul}"));
    for (status, field) in [
        (callback, "stream"),
        (get, "id"),
        (list, "publish_domain"),
        (find, "app"),
        (watch, "event_type"),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), format!("{field}: {nul}"));
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    app.post_ok(payload("seed_example.json")).await;
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

/// `len` bytes that do not compress (a store may compress a long value, and an index entry
/// of repeated letters would fit where Huawei's real names would not).
fn incompressible(len: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::new();
    let mut block = Sha256::digest(b"seed");
    while out.len() < len {
        out.push_str(&hex::encode(block));
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

/// Names as long as the limit are stored by every store (PostgreSQL's index entries cap
/// at ~2.7 KB: `(project_id, task_id)` at their longest still fits); one byte more is
/// refused by name, on both stores alike.
async fn names_up_to_the_limit_are_stored_and_longer_ones_refused_by_name(app: TestApp) {
    let limit = recording_events::domain::callback::MAX_NAME_BYTES;
    let mut body = payload_json("seed_example.json");
    for field in [
        "project_id",
        "publish_domain",
        "app",
        "stream",
        "task_id",
        "job_id",
    ] {
        body[field] = json!(incompressible(limit));
    }
    app.post_ok(body.to_string()).await;
    let mut grpc = app.grpc().await;
    let mut sent = seed_request();
    sent.task_id = incompressible(limit + 1);
    let status = grpc.vod_call_back(authed(sent)).await.unwrap_err();
    body["stream"] = json!(format!("{}x", incompressible(limit)));
    let http = app.post_callback(body.to_string()).await;

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "task_id: must be at most 1024 bytes, got 1025"
    );
    http.assert_error(
        400,
        "INVALID_ARGUMENT",
        "stream: must be at most 1024 bytes, got 1025",
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM recordings").await, 1);
}

crate::on_both_stores!(
    names_up_to_the_limit_are_stored_and_longer_ones_refused_by_name,
    seed_example_is_acknowledged_and_stored_with_its_raw_body,
    redelivery_with_a_new_signature_is_acknowledged_and_stored_once,
    text_with_a_nul_character_is_refused_by_name_everywhere,
);

#[tokio::test]
async fn metrics_count_callbacks_by_outcome_without_a_token() {
    let app = spawn_app().await;
    app.post_ok(payload("seed_example.json")).await;
    app.post_ok(payload("seed_example.json")).await;
    app.post_callback("{}")
        .await
        .assert_error(400, "INVALID_ARGUMENT", "project_id:");

    let (status, text) = app.get_text("/metrics").await;

    assert_eq!(status, 200);
    for line in [
        "recording_events_callbacks_total{outcome=\"stored\"}",
        "recording_events_callbacks_total{outcome=\"duplicate\"}",
        "recording_events_callbacks_total{outcome=\"invalid_argument\"}",
        "recording_events_store_commit_seconds_bucket",
        "recording_events_store_queue_seconds_bucket",
        "recording_events_callback_seconds_count",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    let build_info = format!(
        "recording_events_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.contains(&build_info),
        "missing {build_info} in:\n{text}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_server_keeps_serving() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.args.body_read_timeout = std::time::Duration::from_millis(200)
    })
    .await;
    // Promise 1000 bytes, send 10, then stall.
    let head = format!(
        "POST {CALLBACK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: 1000\r\n\r\n{{\"app\":\"l"
    );
    let reply = app.stalled_request(head.as_bytes()).await;

    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"error\":\"REQUEST_TIMEOUT\""), "{reply}");
    assert!(reply.contains("body: not received within 200ms"), "{reply}");
    app.post_ok(payload("seed_example.json")).await;
}

#[tokio::test]
async fn a_callback_over_http2_without_tls_is_taken_as_over_http1() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let app = spawn_app().await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}{CALLBACK}", app.http_addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(payload("seed_example.json"))))
        .unwrap();

    let resp = h2.request(req).await.unwrap();

    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope["status"], 0, "{envelope}");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_the_callers_own_when_usable() {
    let app = spawn_app().await;
    let auth = format!("Bearer {TOKEN}");
    let id_of =
        |reply: &crate::helpers::Reply| reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let fresh = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());

    // None sent: a new one each time, on acknowledgements and refusals alike.
    let stored = app.post_callback(payload("seed_example.json")).await;
    stored.assert_ok();
    let refused = app.post_callback("{\"app\":").await;
    assert_eq!(refused.status, 400);
    let unknown = app.request(Method::GET, "/nowhere", &[], "").await;
    assert_eq!(unknown.status, 404);
    let ids = [id_of(&stored), id_of(&refused), id_of(&unknown)];
    assert!(ids.iter().all(|id| fresh(id)), "{ids:?}");
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    // The caller's own is given back.
    let given = "huawei-7f3a.retry:2";
    let reply = app
        .request(
            Method::POST,
            CALLBACK,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("x-request-id", given),
            ],
            "{\"app\":\"live\"}",
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(id_of(&reply), given);

    // One that could forge a log line, or too long, is replaced.
    for unusable in ["two words", "a\"b", &"x".repeat(129)] {
        let reply = app
            .request(Method::GET, "/healthz", &[("x-request-id", unusable)], "")
            .await;
        assert_eq!(reply.status, 200);
        assert!(fresh(&id_of(&reply)), "{unusable:?} → {}", id_of(&reply));
    }
}
