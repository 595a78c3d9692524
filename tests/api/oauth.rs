//! The token endpoint (client credentials) and the access tokens it issues, on both fronts.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{TimeZone, Utc};
use http::Method;
use recording_events::config::Secret;
use recording_events::domain::time::Clock;
use recording_events::pb::v1::ListRecordingsRequest;
use tonic::Code;

use crate::helpers::{CALLBACK, Reply, TestApp, payload, spawn_app_with};

const START: i64 = 1_795_770_000;

/// An app with client `billing:s3cret-billing-0123` and an adjustable clock.
async fn app_with_clients() -> (TestApp, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(START));
    let clock_now = now.clone();
    let app = spawn_app_with(|s| {
        s.args.clients = vec!["billing:s3cret-billing-0123".parse().unwrap()];
        s.args.token_ttl = Duration::from_secs(3600);
        s.args.token_signing_key = Some(Secret::new("k".repeat(40)));
        s.clock = Clock::from_fn(move || {
            Utc.timestamp_opt(clock_now.load(Ordering::SeqCst), 0)
                .unwrap()
        });
    })
    .await;
    (app, now)
}

async fn token_request(app: &TestApp, headers: &[(&str, &str)], body: &str) -> Reply {
    app.request(Method::POST, "/oauth/token", headers, body.to_owned())
        .await
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn get_token(app: &TestApp) -> String {
    let reply = token_request(
        app,
        &[FORM],
        "grant_type=client_credentials&client_id=billing&client_secret=s3cret-billing-0123",
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn callback_with(app: &TestApp, authorization: &str) -> Reply {
    app.request(
        Method::POST,
        CALLBACK,
        &[
            ("content-type", "application/json"),
            ("authorization", authorization),
        ],
        payload("seed_example.json"),
    )
    .await
}

fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.body["error"], error, "{:?}", reply.body);
    assert!(reply.body["error_description"].is_string());
}

#[tokio::test]
async fn client_credentials_get_a_token_that_works_on_both_fronts() {
    let (app, _) = app_with_clients().await;

    let reply = token_request(
        &app,
        &[FORM],
        "grant_type=client_credentials&client_id=billing&client_secret=s3cret-billing-0123",
    )
    .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["token_type"], "bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let token = reply.body["access_token"].as_str().unwrap();
    callback_with(&app, &format!("Bearer {token}"))
        .await
        .assert_ok();
    let mut req = tonic::Request::new(ListRecordingsRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let list = app
        .grpc()
        .await
        .list_recordings(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.recordings.len(), 1);
}

#[tokio::test]
async fn basic_auth_and_json_bodies_are_accepted_too() {
    let (app, _) = app_with_clients().await;
    let basic = format!("Basic {}", STANDARD.encode("billing:s3cret-billing-0123"));

    let with_basic = token_request(
        &app,
        &[FORM, ("authorization", &basic)],
        "grant_type=client_credentials",
    )
    .await;
    let with_json = token_request(
        &app,
        &[("content-type", "application/json")],
        r#"{"grant_type":"client_credentials","client_id":"billing","client_secret":"s3cret-billing-0123"}"#,
    )
    .await;

    assert_eq!(with_basic.status, 200, "{:?}", with_basic.body);
    assert_eq!(with_json.status, 200, "{:?}", with_json.body);
}

#[tokio::test]
async fn bad_token_requests_get_rfc6749_errors() {
    let (app, _) = app_with_clients().await;
    let wrong_basic = format!("Basic {}", STANDARD.encode("billing:wrong"));

    let wrong_secret = token_request(
        &app,
        &[FORM],
        "grant_type=client_credentials&client_id=billing&client_secret=nope",
    )
    .await;
    let unknown_client = token_request(
        &app,
        &[FORM],
        "grant_type=client_credentials&client_id=who&client_secret=s3cret-billing-0123",
    )
    .await;
    let wrong_basic = token_request(
        &app,
        &[FORM, ("authorization", &wrong_basic)],
        "grant_type=client_credentials",
    )
    .await;
    let no_credentials = token_request(&app, &[FORM], "grant_type=client_credentials").await;
    let password_grant =
        token_request(&app, &[FORM], "grant_type=password&username=a&password=b").await;
    let no_grant = token_request(
        &app,
        &[FORM],
        "client_id=billing&client_secret=s3cret-billing-0123",
    )
    .await;
    let twice = token_request(
        &app,
        &[
            FORM,
            (
                "authorization",
                &format!("Basic {}", STANDARD.encode("billing:s3cret-billing-0123")),
            ),
        ],
        "grant_type=client_credentials&client_id=billing&client_secret=s3cret-billing-0123",
    )
    .await;
    let get = app.request(Method::GET, "/oauth/token", &[], "").await;

    for reply in [
        &wrong_secret,
        &unknown_client,
        &wrong_basic,
        &no_credentials,
    ] {
        assert_oauth_error(reply, 401, "invalid_client");
        assert!(reply.headers.contains_key("www-authenticate"));
    }
    assert_oauth_error(&password_grant, 400, "unsupported_grant_type");
    assert_oauth_error(&no_grant, 400, "invalid_request");
    assert_oauth_error(&twice, 400, "invalid_request");
    assert_eq!(get.status, 405);
    assert!(!wrong_secret.body.to_string().contains("s3cret"));
}

#[tokio::test]
async fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
    let (app, now) = app_with_clients().await;
    let token = get_token(&app).await;
    let (header_and_claims, signature) = token.rsplit_once('.').unwrap();
    let mut flipped = signature.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{header_and_claims}.{}",
        String::from_utf8(flipped).unwrap()
    );
    let claims = header_and_claims.split_once('.').unwrap().1;
    let unsigned = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let foreign = {
        let key = jsonwebtoken::EncodingKey::from_secret(&[b'x'; 40]);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };

    for bad in [&tampered, &unsigned, &foreign, &"a.b.c".to_owned()] {
        callback_with(&app, &format!("Bearer {bad}"))
            .await
            .assert_error(
                401,
                "UNAUTHENTICATED",
                "authorization: the bearer token is not valid",
            );
    }
    callback_with(&app, &format!("Bearer {token}"))
        .await
        .assert_ok();
    now.store(START + 3600, Ordering::SeqCst);
    callback_with(&app, &format!("Bearer {token}"))
        .await
        .assert_error(
            401,
            "UNAUTHENTICATED",
            "authorization: the access token has expired",
        );
    let mut req = tonic::Request::new(ListRecordingsRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = app.grpc().await.list_recordings(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"));
}

#[tokio::test]
async fn without_clients_the_token_endpoint_issues_nothing() {
    let app = crate::helpers::spawn_app().await;

    let reply = token_request(
        &app,
        &[FORM],
        "grant_type=client_credentials&client_id=a&client_secret=b",
    )
    .await;

    assert_oauth_error(&reply, 401, "invalid_client");
}

/// A token request whose body stalls gets 408 within --body-read-timeout (as a callback
/// does), instead of holding its connection for as long as the client likes.
#[tokio::test]
async fn a_token_request_whose_body_stalls_gets_408_and_tokens_are_still_issued() {
    let app = spawn_app_with(|s| {
        s.args.clients = vec!["billing:s3cret-billing-0123".parse().unwrap()];
        s.args.body_read_timeout = Duration::from_millis(200);
    })
    .await;
    // Promise 1000 bytes, send a few, then stall.
    let reply = app
        .stalled_request(
            b"POST /oauth/token HTTP/1.1\r\nhost: x\r\n\
              content-type: application/x-www-form-urlencoded\r\n\
              content-length: 1000\r\n\r\ngrant_type=client",
        )
        .await;

    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"error\":\"invalid_request\""), "{reply}");
    assert!(reply.contains("body: not received within 200ms"), "{reply}");
    assert!(reply.contains("cache-control: no-store"), "{reply}");
    get_token(&app).await;
}
