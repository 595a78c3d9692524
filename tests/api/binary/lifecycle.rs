//! Starting and stopping: the first start's token, JSON logs, `--help`, and SIGTERM
//! with a shutdown delay.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

#[tokio::test]
async fn first_start_prints_a_kept_token_and_sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();

    let first = start(&db);
    let token_file = format!("{db}.token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    let reply = post_seed(&first.http, &token).await;
    let (stdout, stderr) = sigterm_and_wait(first);

    assert_eq!(token.len(), 64);
    assert_eq!(mode, 0o600);
    assert_eq!(reply, 200);
    // A clean stop copies the WAL back: the database file alone holds every callback.
    let wal_len = std::fs::metadata(format!("{db}-wal")).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the WAL is checkpointed at a clean stop");
    assert!(
        stdout.contains(&format!("Authorization: Bearer {token}")),
        "{stdout}"
    );
    assert!(
        !stderr.contains(&token),
        "the token must not reach the logs"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(
        stderr.contains(&format!("store open database=sqlite://{db}")),
        "where the store is: {stderr}"
    );

    let second = start(&db);
    let reply = post_seed(&second.http, &token).await;
    let (stdout, stderr) = sigterm_and_wait(second);

    assert_eq!(reply, 200, "the kept token still works");
    assert!(!stdout.contains(&token), "printed only once: {stdout}");
    assert!(stderr.contains("kept in"), "{stderr}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_recording-events"));
    // Requests rejected (here: a watch resumed past the newest event) at debug level.
    command.env("RUST_LOG", "info,recording_events::error=debug");
    let started = start_by(command, &db, &["--log-format=json"]);
    let token = std::fs::read_to_string(format!("{db}.token")).unwrap();
    let token = token.trim();
    assert_eq!(post_seed(&started.http, token).await, 200);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let rejected = client
        .request(
            http::Request::post(format!(
                "http://{}{}",
                started.http,
                crate::helpers::CALLBACK
            ))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", "sender-call-0042")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"app": "live"}"#,
            )))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        rejected.status(),
        400,
        "a bad callback is answered, not dropped"
    );
    // A stream's failure is logged with its call's request id too.
    let mut grpc = recording_events::pb::v1::recording_event_client::RecordingEventClient::connect(
        format!("http://{}", started.grpc),
    )
    .await
    .unwrap();
    let mut watch = tonic::Request::new(recording_events::pb::v1::WatchEventsRequest {
        after_sequence: 1000,
        ..Default::default()
    });
    watch
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    watch
        .metadata_mut()
        .insert("x-request-id", "watcher-0009".parse().unwrap());
    let mut stream = grpc.watch_events(watch).await.unwrap().into_inner();
    let ended = stream.message().await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::OutOfRange, "{ended:?}");
    drop((stream, grpc));
    // Off the test's runtime, which must keep driving the gRPC client's connection.
    let (_, stderr) = tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
            l["message"].as_str().unwrap()
        })
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("http listening on ")),
        "{messages:?}"
    );
    assert!(messages.contains(&"stopped"), "{messages:?}");
    let opened = lines
        .iter()
        .find(|l| l["message"] == "store open")
        .unwrap_or_else(|| panic!("where the store is is logged\n{stderr}"));
    assert_eq!(
        opened["database"],
        format!("sqlite://{db}"),
        "a plain string: {opened}"
    );
    let refused = lines
        .iter()
        .find(|l| l["message"] == "callback refused")
        .unwrap_or_else(|| panic!("a refused callback is logged\n{stderr}"));
    assert_eq!(refused["request_id"], "sender-call-0042", "{refused}");
    let watch_ended = lines
        .iter()
        .find(|l| l["message"] == "request rejected" && l["code"] == "OUT_OF_RANGE")
        .unwrap_or_else(|| panic!("the watch's end is logged at debug level\n{stderr}"));
    assert_eq!(watch_ended["request_id"], "watcher-0009", "{watch_ended}");
    assert!(!stderr.contains(token), "the token must not reach the logs");
}

#[tokio::test]
async fn after_a_sigterm_the_shutdown_delay_serves_not_ready_until_a_second_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let token = "test-token-0123456789";
    let started = start_with(
        db.to_str().unwrap(),
        &[&format!("--api-token={token}"), "--shutdown-delay=10m"],
    );
    let ready_before = get_raw(started.http.as_str(), "/readyz").await;

    signal(&started, "-TERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let not_ready = loop {
        let readyz = get_raw(started.http.as_str(), "/readyz").await;
        if readyz.starts_with("HTTP/1.1 503") || std::time::Instant::now() > deadline {
            break readyz;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let metrics = metrics_text(started.http.as_str()).await;
    let reply = post_seed(&started.http, token).await;
    let health = crate::helpers::health_check(&started.grpc).await;
    // Waited for off this runtime, which must go on running the clients' connections
    // (an HTTP/2 client answers the server's last ping before it closes).
    let (_, stderr) = tokio::task::spawn_blocking(move || sigterm_and_wait(started))
        .await
        .unwrap();

    assert!(ready_before.starts_with("HTTP/1.1 200"), "{ready_before}");
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(
        not_ready.contains("the server is shutting down"),
        "{not_ready}"
    );
    assert!(metrics.contains("\nrecording_events_ready 0"), "{metrics}");
    assert_eq!(reply, 200, "callbacks are still taken");
    assert_eq!(health.unwrap(), 2, "gRPC health: NOT_SERVING");
    assert!(stderr.contains("still serving for 10m"), "{stderr}");
    assert!(
        stderr.contains("second signal: ending the shutdown delay"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
}

/// A start that is refused says why on one line, each cause once, and exits with 1,
/// without a backtrace even when RUST_BACKTRACE is set (as it often is, for panics).
#[test]
fn a_refused_start_says_why_in_one_line_without_a_backtrace() {
    for (url, says, once) in [
        (
            "sqlite::memory:",
            "Error: cannot open the store \"sqlite::memory:\": --database-url: an in-memory \
             SQLite database would lose every acknowledged callback",
            "in-memory",
        ),
        (
            // Nothing listens on port 1: the connection is refused at once.
            "postgres://postgres@127.0.0.1:1/x",
            "Error: cannot open the store \"postgres://postgres@127.0.0.1:1/x\": cannot \
             connect to PostgreSQL: error connecting to server: Connection refused",
            "Connection refused",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_recording-events"))
            .arg(format!("--database-url={url}"))
            .args(["--api-token=a-token-of-some-length"])
            .args(["--http-addr=127.0.0.1:0", "--grpc-addr=127.0.0.1:0"])
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();

        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with(says), "{stderr}");
        assert_eq!(last.matches(once).count(), 1, "said once: {last}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    }
}

#[test]
fn help_never_shows_secrets_taken_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_recording-events"))
        .arg("--help")
        .env("RECORDING_EVENTS_API_TOKENS", "token-from-env")
        .env("RECORDING_EVENTS_CALLBACK_KEYS", "key-from-env")
        .env("RECORDING_EVENTS_CLIENTS", "id:secret-from-env")
        .env("RECORDING_EVENTS_TOKEN_SIGNING_KEY", "signing-from-env")
        .env("DATABASE_URL", "postgres://u:password-from-env@db/x")
        .output()
        .unwrap();

    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("RECORDING_EVENTS_API_TOKENS"));
    for secret in [
        "token-from-env",
        "key-from-env",
        "secret-from-env",
        "signing-from-env",
        "password-from-env",
    ] {
        assert!(!help.contains(secret), "--help shows {secret}");
    }
}

/// A short API token or client secret is taken, with a warning at start that names it
/// without showing it.
#[tokio::test]
async fn short_tokens_and_client_secrets_are_warned_about_without_being_shown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let started = start_with(
        &db,
        &["--api-token=tiny-tok3n", "--client=billing:short-s3cret"],
    );
    assert_eq!(
        post(
            &started.http,
            "tiny-tok3n",
            crate::helpers::payload("seed_example.json")
        )
        .await,
        200
    );
    let (stdout, stderr) = sigterm_and_wait(started);
    assert!(
        stderr.contains(
            "--api-token / RECORDING_EVENTS_API_TOKENS (the token #1): only 10 characters, \
             cheap to guess; use at least 16"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("--client billing: the secret: only 12 characters, cheap to guess"),
        "{stderr}"
    );
    for said in [&stdout, &stderr] {
        assert!(
            !said.contains("tiny-tok3n") && !said.contains("short-s3cret"),
            "{said}"
        );
    }
}

/// A first start refused after its settings were read (the store unreachable, a port
/// taken) keeps no generated token or signing key: the token is shown only once, so one
/// kept by a start that never served would never be shown. The next start that serves
/// prints it.
#[tokio::test]
async fn a_refused_first_start_keeps_no_generated_secret_and_the_next_one_prints_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap();
    let token_file = dir.path().join("elsewhere.token");
    let refused = |url: String, flags: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_recording-events"))
            .arg(format!("--database-url={url}"))
            .args([
                "--grpc-addr=127.0.0.1:0",
                "--client=billing:s3cret-of-some-length",
            ])
            .args(flags)
            .env_remove("RECORDING_EVENTS_API_TOKENS")
            .output()
            .unwrap()
    };

    let port_taken = refused(
        format!("sqlite://{db}"),
        vec![format!("--http-addr={taken}")],
    );
    let store_away = refused(
        // Nothing listens on port 1: the connection is refused at once.
        "postgres://postgres@127.0.0.1:1/x".into(),
        vec![
            "--http-addr=127.0.0.1:0".into(),
            format!("--token-file={}", token_file.display()),
        ],
    );

    for (out, says) in [
        (
            &port_taken,
            format!("Error: --http-addr: cannot listen on {taken}"),
        ),
        (&store_away, "Error: cannot open the store".to_owned()),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&says), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("Bearer"), "no token shown: {stdout}");
    }
    assert!(!std::path::Path::new(&format!("{db}.token")).exists());
    assert!(!std::path::Path::new(&format!("{db}.signing-key")).exists());
    assert!(!token_file.exists());

    let started = start(&db);
    let (stdout, _) = sigterm_and_wait(started);
    let token = std::fs::read_to_string(format!("{db}.token")).unwrap();
    assert!(
        stdout.contains(&format!("Authorization: Bearer {}", token.trim())),
        "{stdout}"
    );
}
