//! Callback signatures (HMAC-SHA256 and MD5), their time window, key rotation and the
//! callback-auth policy.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use http::Method;
use recording_events::auth::sign;
use recording_events::config::{CallbackAuth, Secret, SignType};
use recording_events::domain::time::Clock;
use recording_events::pb::v1::VodCallBackRequest;
use serde_json::{Value, json};

use crate::helpers::{CALLBACK, TOKEN, TestApp, payload_json, spawn_app_with};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const NEXT_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxw";
/// 2026-11-27T09:00:00Z: the auth_timestamp of the signed samples.
const SIGNED_AT: i64 = 1_795_770_000;

async fn signed_app(sign_type: SignType, keys: &[&str], policy: Option<CallbackAuth>) -> TestApp {
    let keys: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    spawn_app_with(|s| {
        s.args.callback_keys = keys;
        s.args.callback_sign_type = sign_type;
        s.args.callback_auth = policy;
        s.clock = Clock::fixed(Utc.timestamp_opt(SIGNED_AT + 30, 0).unwrap());
    })
    .await
}

async fn post_unauthenticated(app: &TestApp, body: &Value) -> crate::helpers::Reply {
    app.request(
        Method::POST,
        CALLBACK,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// A callback with `Authorization: Bearer nope`: refused as not valid, whatever the body.
async fn assert_a_wrong_bearer_is_refused(app: &TestApp, body: String) {
    app.request(
        Method::POST,
        CALLBACK,
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer nope"),
        ],
        body,
    )
    .await
    .assert_error(
        401,
        "UNAUTHENTICATED",
        "authorization: the bearer token is not valid",
    );
}

/// Re-signs a body with `key` after edits, from the formula.
fn resign(body: &mut Value, sign_type: SignType, key: &str) {
    let req: VodCallBackRequest = serde_json::from_value(body.clone()).unwrap();
    body["auth_sign"] = json!(hex::encode(sign(sign_type, key, &req)));
}

#[tokio::test]
async fn the_signed_samples_are_accepted_without_a_bearer_token() {
    let hmac = signed_app(SignType::Hmacsha256, &[KEY], None).await;
    let md5 = signed_app(SignType::Md5, &[KEY], None).await;

    post_unauthenticated(&hmac, &payload_json("signed_hmacsha256.json"))
        .await
        .assert_ok();
    post_unauthenticated(&md5, &payload_json("signed_md5.json"))
        .await
        .assert_ok();
    let mut upper = payload_json("signed_hmacsha256.json");
    upper["auth_sign"] = json!(upper["auth_sign"].as_str().unwrap().to_uppercase());
    post_unauthenticated(&hmac, &upper).await.assert_ok();
}

#[tokio::test]
async fn flipping_any_signed_field_breaks_the_hmac_signature() {
    let app = signed_app(SignType::Hmacsha256, &[KEY], None).await;
    for field in [
        "event_type",
        "publish_domain",
        "app",
        "stream",
        "download_url",
        "play_url",
    ] {
        let mut body = payload_json("signed_hmacsha256.json");
        let value = body[field].as_str().unwrap().to_owned();
        body[field] = json!(format!("{value}x"));

        let reply = post_unauthenticated(&app, &body).await;

        reply.assert_error(
            401,
            "UNAUTHENTICATED",
            "auth_sign: the signature does not match",
        );
    }
    let mut body = payload_json("signed_hmacsha256.json");
    body["auth_timestamp"] = json!(SIGNED_AT + 1);
    post_unauthenticated(&app, &body).await.assert_error(
        401,
        "UNAUTHENTICATED",
        "auth_sign: the signature does not match",
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn timestamps_outside_the_window_are_rejected() {
    let app = signed_app(SignType::Hmacsha256, &[KEY], None).await;
    // The clock is pinned at SIGNED_AT + 30 = 1795770030, 2026-11-27T09:00:30Z.
    for (timestamp, says) in [
        (
            SIGNED_AT + 30 - 601,
            "auth_timestamp: 1795769429 (2026-11-27T08:50:29Z) is 10m 1s behind this \
             server's clock (2026-11-27T09:00:30Z), outside the accepted window of ±10m",
        ),
        (
            SIGNED_AT + 30 + 601,
            "auth_timestamp: 1795770631 (2026-11-27T09:10:31Z) is 10m 1s ahead of this \
             server's clock (2026-11-27T09:00:30Z), outside the accepted window of ±10m",
        ),
        (
            SIGNED_AT + 30 - 86_400,
            "auth_timestamp: 1795683630 (2026-11-26T09:00:30Z) is 1day behind this \
             server's clock",
        ),
        (
            (SIGNED_AT + 31) * 1000,
            "auth_timestamp: 1795770031000 reads as milliseconds; it is Unix seconds (the \
             accepted window is ±10m)",
        ),
        (
            i64::MAX,
            "auth_timestamp: 9223372036854775807 is outside the accepted window of ±10m",
        ),
    ] {
        let mut body = payload_json("signed_hmacsha256.json");
        body["auth_timestamp"] = json!(timestamp);
        resign(&mut body, SignType::Hmacsha256, KEY);

        post_unauthenticated(&app, &body)
            .await
            .assert_error(401, "UNAUTHENTICATED", says);
    }
    let mut inside = payload_json("signed_hmacsha256.json");
    inside["auth_timestamp"] = json!(SIGNED_AT + 30 + 590);
    resign(&mut inside, SignType::Hmacsha256, KEY);
    post_unauthenticated(&app, &inside).await.assert_ok();
}

#[tokio::test]
async fn either_of_two_rotated_keys_is_accepted_and_no_other() {
    let app = signed_app(SignType::Md5, &[KEY, NEXT_KEY], None).await;
    let mut old = payload_json("signed_md5.json");
    resign(&mut old, SignType::Md5, KEY);
    let mut new = payload_json("signed_md5.json");
    new["job_id"] = json!("job-0002");
    resign(&mut new, SignType::Md5, NEXT_KEY);
    let mut stranger = payload_json("signed_md5.json");
    stranger["job_id"] = json!("job-0003");
    resign(
        &mut stranger,
        SignType::Md5,
        "someoneelse0123456789abcdefghijkl",
    );

    post_unauthenticated(&app, &old).await.assert_ok();
    post_unauthenticated(&app, &new).await.assert_ok();
    post_unauthenticated(&app, &stranger).await.assert_error(
        401,
        "UNAUTHENTICATED",
        "auth_sign: the signature does not match",
    );
}

#[tokio::test]
async fn the_policy_decides_between_bearer_and_signature() {
    let bearer_only = signed_app(SignType::Hmacsha256, &[KEY], Some(CallbackAuth::Bearer)).await;
    let signature_only =
        signed_app(SignType::Hmacsha256, &[KEY], Some(CallbackAuth::Signature)).await;
    let either = signed_app(SignType::Hmacsha256, &[KEY], None).await;
    let signed = payload_json("signed_hmacsha256.json");
    let mut unsigned = payload_json("seed_example.json");
    unsigned["asset_id"] = json!("unsigned");

    post_unauthenticated(&bearer_only, &signed)
        .await
        .assert_error(401, "UNAUTHENTICATED", "authorization: missing");
    signature_only
        .post_callback(unsigned.to_string())
        .await
        .assert_error(401, "UNAUTHENTICATED", "auth_sign: missing");
    post_unauthenticated(&signature_only, &signed)
        .await
        .assert_ok();
    either.post_ok(unsigned.to_string()).await;
    post_unauthenticated(&either, &signed).await.assert_ok();
    assert_a_wrong_bearer_is_refused(&either, signed.to_string()).await;
    let _ = TOKEN;
}

#[tokio::test]
async fn no_auth_accepts_anything_but_is_explicit() {
    let app = spawn_app_with(|s| {
        s.args.no_auth = true;
        s.args.signature_skew = Duration::from_secs(1);
    })
    .await;

    post_unauthenticated(&app, &payload_json("seed_example.json"))
        .await
        .assert_ok();
}

#[tokio::test]
async fn credentials_in_the_headers_are_checked_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Bearer only (the default without a key): no token, or a wrong one, is refused
    // whatever the body, without parsing it …
    let app = spawn_app_with(|s| s.args.body_read_timeout = Duration::from_secs(120)).await;
    post_unauthenticated(&app, &json!("not a callback"))
        .await
        .assert_error(401, "UNAUTHENTICATED", "authorization: missing");
    assert_a_wrong_bearer_is_refused(&app, "{\"app\":".into()).await;
    // … or waiting for it: a body announced and never sent is not waited for.
    let mut conn = tokio::net::TcpStream::connect(app.http_addr).await.unwrap();
    conn.write_all(
        format!(
            "POST {CALLBACK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 1000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0; 12];
    tokio::time::timeout(Duration::from_secs(20), conn.read_exact(&mut head))
        .await
        .expect("answered before the body (the body deadline is 120 s)")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

    // Where a signature may decide, the body must be read: without a bearer token a
    // malformed body is what is wrong; a presented token still decides first.
    let either = signed_app(SignType::Hmacsha256, &[KEY], None).await;
    let signature_only =
        signed_app(SignType::Hmacsha256, &[KEY], Some(CallbackAuth::Signature)).await;
    for app in [&either, &signature_only] {
        post_unauthenticated(app, &json!([])).await.assert_error(
            400,
            "INVALID_ARGUMENT",
            "body: is an array",
        );
    }
    assert_a_wrong_bearer_is_refused(&either, "{\"app\":".into()).await;
}

/// An empty API token (`RECORDING_EVENTS_API_TOKENS=`, a trailing comma) is refused at
/// start, naming which; a short one is taken (with a warning, see the binary's tests).
#[tokio::test]
async fn an_empty_api_token_is_refused_at_start_and_a_short_one_is_taken() {
    use recording_events::config::Settings;
    use recording_events::startup::Application;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let mut settings = Settings::for_tests(&url, TOKEN);
    settings.args.api_tokens.push(Secret::new(" "));

    let empty = Application::build(settings).await.err().expect("refused");

    assert_eq!(
        format!("{empty:#}"),
        "--api-token / RECORDING_EVENTS_API_TOKENS (the token #2): is empty (make one with \
         `openssl rand -hex 32`)"
    );
    let short = spawn_app_with(|s| s.args.api_tokens = vec![Secret::new("tiny-tok3n")]).await;
    let reply = short
        .request(
            Method::POST,
            CALLBACK,
            &[("authorization", "Bearer tiny-tok3n")],
            crate::helpers::payload("seed_example.json"),
        )
        .await;
    reply.assert_ok();
}
