//! The binary as an operator runs it: addresses and a generated token printed at start,
//! the token kept for restarts, SIGTERM stops it cleanly (the WAL copied back), SIGKILL
//! loses nothing acknowledged.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use http::Method;

struct Started {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    http: String,
    grpc: String,
}

/// Starts the binary on ports 0 and waits for both listening lines.
fn start(db: &str) -> Started {
    start_with(db, &[])
}

/// [`start`] with more flags.
fn start_with(db: &str, flags: &[&str]) -> Started {
    start_by(
        Command::new(env!("CARGO_BIN_EXE_recording-events")),
        db,
        flags,
    )
}

/// Starts the service by `command` (the binary, or a shell that runs it) with `flags`.
fn start_by(mut command: Command, db: &str, flags: &[&str]) -> Started {
    if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
        command.env("RUST_LOG", "info");
    }
    let mut child = command
        .args(["--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"])
        .arg(format!("--database-url=sqlite://{db}"))
        .args(flags)
        .env_remove("RECORDING_EVENTS_API_TOKENS")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut seen, mut http, mut grpc) = (String::new(), None, None);
    while http.is_none() || grpc.is_none() {
        let line = lines
            .next()
            .expect("the server prints its addresses")
            .unwrap();
        let addr = |marker: &str| {
            let (_, rest) = line.split_once(marker)?;
            let end = rest.find(['"', ' ']).unwrap_or(rest.len());
            Some(rest[..end].trim().to_owned())
        };
        http = http.or_else(|| addr("http listening on "));
        grpc = grpc.or_else(|| addr("grpc listening on "));
        seen.push_str(&line);
        seen.push('\n');
    }
    let stderr = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let stdout = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    Started {
        child,
        stdout,
        stderr,
        http: http.unwrap(),
        grpc: grpc.unwrap(),
    }
}

/// Sends SIGTERM and waits for a clean exit: (stdout, stderr). A server still running a
/// minute later is killed, and the test fails with what it logged.
fn sigterm_and_wait(mut started: Started) -> (String, String) {
    let status = Command::new("kill")
        .args(["-TERM", &started.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = started.child.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = started.child.kill();
            let _ = started.child.wait();
            panic!(
                "still running a minute after SIGTERM; its log:\n{}",
                started.stderr.join().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    (
        started.stdout.join().unwrap(),
        started.stderr.join().unwrap(),
    )
}

/// A command that runs the binary under `ulimit {limit}` (e.g. `-Sn 64`: the soft limit
/// on open files), for [`start_by`].
fn under_ulimit(limit: &str) -> Command {
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        &format!("ulimit {limit} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_recording-events"),
    ]);
    shell
}

/// Sends SIGHUP to the service (it reloads its TLS files).
fn hangup(started: &Started) {
    signal(started, "-HUP");
}

/// Sends a signal (`kill`'s flag, e.g. `-TERM`) to the service.
fn signal(started: &Started, which: &str) {
    let status = Command::new("kill")
        .args([which, &started.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

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
        stderr.contains(&format!("store open database=\"sqlite://{db}\"")),
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
async fn sighup_reloads_the_tls_certificate_and_keeps_it_when_the_new_one_is_bad() {
    use crate::tls::{certificate_until, get_over_tls, try_post_over_tls};
    const EXPIRY: &str = "recording_events_tls_certificate_expiration_timestamp_seconds";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, first_pem) = certificate_until(dir.path(), "server", (2031, 5, 1));
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let addr: std::net::SocketAddr = started.http.parse().unwrap();
    assert_eq!(try_post_over_tls(addr, &first_pem).await.unwrap().0, 200);
    let metrics = get_over_tls(addr, &first_pem, "/metrics").await;
    assert!(
        metrics.contains(&format!("{EXPIRY} 1935360000")),
        "the expiry of the first certificate (2031-05-01): {metrics}"
    );

    // A new pair in the same files, then SIGHUP: new connections get it.
    let (new_cert, new_key, second_pem) = certificate_until(dir.path(), "next", (2032, 6, 1));
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    hangup(&started);
    let mut reloaded = false;
    for _ in 0..100 {
        if try_post_over_tls(addr, &second_pem).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    assert!(
        try_post_over_tls(addr, &first_pem).await.is_err(),
        "the old certificate is no longer served"
    );

    // A broken key: the reload is refused and the current certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    hangup(&started);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(try_post_over_tls(addr, &second_pem).await.unwrap().0, 200);
    let metrics = get_over_tls(addr, &second_pem, "/metrics").await;
    assert!(
        metrics.contains(&format!("{EXPIRY} 1969660800")),
        "the expiry of the certificate in use (2032-06-01): {metrics}"
    );
    let (_, stderr) = sigterm_and_wait(started);
    assert!(stderr.contains("TLS certificate reloaded"), "{stderr}");
    assert!(stderr.contains("TLS certificate not reloaded"), "{stderr}");
    assert!(
        stderr.contains("--tls-key"),
        "the refusal names the flag: {stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_client_ca() {
    use crate::tls::{certificate, client_ca, refused_with, try_grpc_over_tls};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, server_pem) = certificate(dir.path(), "server");
    let (ca, first_client) = client_ca(dir.path(), "first");
    let (next_ca, next_client) = client_ca(dir.path(), "next");
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", ca.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let port = started.grpc.parse::<std::net::SocketAddr>().unwrap().port();
    assert_eq!(
        try_grpc_over_tls(port, &server_pem, Some(first_client.clone())).await,
        Ok(())
    );

    // The next CA in the same file, then SIGHUP: new connections are checked against it.
    std::fs::rename(&next_ca, &ca).unwrap();
    hangup(&started);
    let mut reloaded = false;
    for _ in 0..100 {
        if try_grpc_over_tls(port, &server_pem, Some(next_client.clone()))
            .await
            .is_ok()
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "a client of the new CA is let in after SIGHUP");
    assert!(
        refused_with(port, &server_pem, Some(first_client), "UnknownCA").await,
        "a client of the old CA is refused after SIGHUP"
    );
    let (_, stderr) = sigterm_and_wait(started);
    assert!(
        stderr.contains("gRPC clients must present a certificate issued by --tls-client-ca"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_revocation_list() {
    use crate::tls::{TestCa, certificate, refused_with, try_grpc_over_tls};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, server_pem) = certificate(dir.path(), "server");
    let ca = TestCa::new(dir.path(), "clients");
    let crl = dir.path().join("clients.crl");
    std::fs::write(&crl, ca.crl(&[], (2099, 1, 1))).unwrap();
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", ca.path.display()),
        format!("--tls-client-crl={}", crl.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let port = started.grpc.parse::<std::net::SocketAddr>().unwrap().port();
    let (kept, leaving) = (ca.client(1), ca.client(2));
    assert_eq!(
        try_grpc_over_tls(port, &server_pem, Some(leaving.clone())).await,
        Ok(())
    );

    // The CA revokes client 2; the new list is written in place, then SIGHUP.
    std::fs::write(&crl, ca.crl(&[2], (2099, 1, 1))).unwrap();
    hangup(&started);
    let mut revoked = false;
    for _ in 0..100 {
        if try_grpc_over_tls(port, &server_pem, Some(leaving.clone()))
            .await
            .is_err_and(|e| e.contains("CertificateRevoked"))
        {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let still_in = try_grpc_over_tls(port, &server_pem, Some(kept)).await;
    let also_revoked = refused_with(port, &server_pem, Some(leaving), "CertificateRevoked").await;
    let (_, stderr) = sigterm_and_wait(started);

    assert!(
        revoked,
        "a client revoked by the new list is refused after SIGHUP"
    );
    assert!(also_revoked, "and stays refused");
    assert_eq!(still_in, Ok(()), "a client not revoked is still let in");
    assert!(
        stderr.contains("not revoked in --tls-client-crl"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TLS certificate reloaded, with the client CAs and revocation lists"),
        "{stderr}"
    );
}

#[tokio::test]
async fn with_a_low_soft_limit_on_open_files_a_burst_of_connections_is_still_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    // As under a service manager's default of 1,024, scaled down: 64 descriptors would
    // leave room for about 40 connections.
    let shell = under_ulimit("-Sn 64");
    let started = start_by(shell, &db, &["--api-token=test-token-0123456789"]);
    let addr: std::net::SocketAddr = started.http.parse().unwrap();

    // 150 connections open at once, each with a distinct callback, all held until every
    // answer is in.
    let mut conns = Vec::new();
    for i in 0..150 {
        let mut body = crate::helpers::payload_json("seed_example.json");
        body["asset_id"] = serde_json::json!(format!("asset-{i}"));
        let body = body.to_string();
        let request = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Bearer test-token-0123456789\r\ncontent-length: {}\r\n\r\n{body}",
            crate::helpers::CALLBACK,
            body.len()
        );
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        conns.push(conn);
    }
    let mut answered = 0;
    for conn in &mut conns {
        let mut reply = [0u8; 16];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_exact(&mut reply),
        )
        .await;
        if matches!(read, Ok(Ok(_))) && reply.starts_with(b"HTTP/1.1 200") {
            answered += 1;
        }
    }
    drop(conns);
    let (_, stderr) = sigterm_and_wait(started);

    assert_eq!(answered, 150, "every connection answered");
    assert!(stderr.contains("(soft limit raised from 64)"), "{stderr}");
}

#[tokio::test]
async fn out_of_descriptors_both_ports_wait_and_then_serve_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    // A hard limit of 64: no raising it; idle connections are kept for a minute.
    let shell = under_ulimit("-n 64");
    let started = start_by(
        shell,
        &db,
        &[
            "--api-token=test-token-0123456789",
            "--header-read-timeout=60s",
        ],
    );
    let grpc: std::net::SocketAddr = started.grpc.parse().unwrap();
    let http: std::net::SocketAddr = started.http.parse().unwrap();

    // More idle connections than descriptors left, on both ports.
    let mut idle = Vec::new();
    for addr in [grpc, http].iter().cycle().take(120) {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(idle);

    // Once they are gone, both ports serve again.
    let mut health = None;
    for _ in 0..100 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await;
        if let Ok(channel) = channel {
            health = tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .ok()
                .map(|r| r.into_inner().status);
            if health.is_some() {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let posted = post_seed(&started.http, "test-token-0123456789").await;
    let metrics = metrics_text(http).await;
    let (_, stderr) = sigterm_and_wait(started);

    for front in ["grpc", "http"] {
        let counted = format!("recording_events_accept_failures_total{{front=\"{front}\"}} ");
        assert!(metrics.contains(&counted), "{front}: counted\n{metrics}");
    }
    assert_eq!(health, Some(1), "gRPC serves again");
    assert_eq!(posted, 200, "HTTP serves again");
    // Each port waited after its failed accepts rather than retrying in a busy loop.
    for front in [r#"front="grpc""#, r#"front="http""#] {
        let failures = stderr
            .lines()
            .filter(|l| l.contains("accept failed") && l.contains(front))
            .count();
        assert!(failures > 0, "{front}: failed accepts are logged\n{stderr}");
    }
}

/// `GET /metrics` on its own HTTP/1 connection, closed after the reply.
async fn metrics_text(http: impl tokio::net::ToSocketAddrs) -> String {
    get_raw(http, "/metrics").await
}

/// `GET path` on its own HTTP/1 connection: the whole reply, status line first.
async fn get_raw(http: impl tokio::net::ToSocketAddrs, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(http).await.unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    text
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

#[tokio::test]
async fn open_connections_are_counted_by_port() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let started = start_with(db.to_str().unwrap(), &["--api-token=test-token-0123456789"]);
    let (http, grpc) = (started.http.as_str(), started.grpc.as_str());
    // (grpc, http) as /metrics reads them, its own connection counted on http.
    let counted = |text: &str| {
        let value = |front: &str| {
            let key = format!("recording_events_connections{{front=\"{front}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&key)?.trim().parse::<f64>().ok())
        };
        (value("grpc"), value("http"))
    };
    let settle = |want: (f64, f64)| async move {
        let mut seen = (None, None);
        for _ in 0..50 {
            seen = counted(&metrics_text(http).await);
            if seen == (Some(want.0), Some(want.1)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        seen
    };

    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(grpc).await.unwrap();
        conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        held.push(conn);
    }
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(http).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(conn);
    }
    let with_held = settle((3.0, 3.0)).await;
    drop(held);
    let after = settle((0.0, 1.0)).await;
    sigterm_and_wait(started);

    assert_eq!(
        with_held,
        (Some(3.0), Some(3.0)),
        "3 gRPC, 2 HTTP + the scrape"
    );
    assert_eq!(
        after,
        (Some(0.0), Some(1.0)),
        "closed connections leave the count"
    );
}

async fn post_seed(addr: &str, token: &str) -> u16 {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{}", crate::helpers::CALLBACK))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(crate::helpers::payload(
            "seed_example.json",
        ))))
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(60), client.request(req))
        .await
        .expect("the callback is answered within a minute");
    reply.unwrap().status().as_u16()
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

/// Posts one callback; `Some(true)` when acknowledged (`status: 0`), `None` when the
/// connection failed (the process was killed).
async fn post_body(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    addr: &str,
    token: &str,
    body: String,
) -> Option<bool> {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{}", crate::helpers::CALLBACK))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let reply = client.request(req).await.ok()?;
    let status = reply.status();
    let bytes = reply.into_body().collect().await.ok()?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(status == 200 && json["status"] == 0)
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_callback() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let mut acked = BTreeSet::new();
    // Three rounds on the same file: start (recovering from the previous kill), load,
    // SIGKILL mid-stream, then every callback ever acknowledged must be in the file. (A
    // process crash: what was written survives in the page cache, so this catches an
    // acknowledgement given before the write, e.g. frames still in the WAL buffer of the
    // VFS; power loss is what the fsync before each acknowledgement is for.)
    for round in 0..3 {
        let running = start(&db);
        let token = std::fs::read_to_string(format!("{db}.token"))
            .unwrap()
            .trim()
            .to_owned();
        acked.extend(load_until_killed(running, &token, round).await);

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        let stored: BTreeSet<String> = conn
            .prepare("SELECT json_extract(raw_body, '$.asset_id') FROM events")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(conn);
        let lost: Vec<_> = acked.difference(&stored).collect();

        assert_eq!(check, "ok", "round {round}");
        assert!(acked.len() >= 1_000 * (round + 1));
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged callbacks lost: {lost:?}",
            lost.len()
        );
    }
}

/// 32 senders post distinct callbacks until at least 1,000 are acknowledged, then the
/// server gets SIGKILL with requests in flight. Returns the acknowledged asset ids.
async fn load_until_killed(
    mut running: Started,
    token: &str,
    round: usize,
) -> std::collections::BTreeSet<String> {
    use std::sync::{Arc, Mutex};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let acked = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let mut senders = Vec::new();
    for sender in 0..32 {
        let (client, addr, token, acked) = (
            client.clone(),
            running.http.clone(),
            token.to_owned(),
            acked.clone(),
        );
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let asset = format!("kill-{round}-{sender}-{i}");
                let mut body = crate::helpers::payload_json("seed_example.json");
                body["asset_id"] = serde_json::json!(asset);
                match post_body(&client, &addr, &token, body.to_string()).await {
                    Some(true) => {
                        acked.lock().unwrap().insert(asset);
                    }
                    Some(false) => panic!("a callback was refused before the kill"),
                    None => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 1_000 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    running.child.kill().unwrap(); // SIGKILL
    running.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    std::mem::take(&mut *acked.lock().unwrap())
}

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
