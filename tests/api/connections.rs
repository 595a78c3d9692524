//! Connections that never send a request are closed; those that did may idle (until
//! `--max-connection-age`, on gRPC).

use std::time::Duration;

use recording_events::pb::v1::WatchEventsRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, payload, spawn_app_with};

const OPENING: Duration = Duration::from_millis(300);

async fn app() -> TestApp {
    spawn_app_with(|s| s.args.header_read_timeout = OPENING).await
}

/// Whether the server closes a connection that sent `first` and then nothing, within 5 s
/// (what it sends before closing, e.g. HTTP/2 settings, is read and dropped).
async fn closed_after_sending(addr: std::net::SocketAddr, first: &[u8]) -> bool {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(first).await.unwrap();
    let drained = async {
        let mut sink = [0u8; 1024];
        while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .is_ok()
}

#[tokio::test]
async fn connections_that_send_no_request_in_time_are_closed_on_both_fronts() {
    let app = app().await;

    let http_silent = closed_after_sending(app.http_addr, b"").await;
    // A part of the HTTP/2 preface, which the HTTP front reads to tell HTTP/2 from HTTP/1.
    let http_part = closed_after_sending(app.http_addr, b"PRI * HTTP/2.0\r\n").await;
    let grpc_silent = closed_after_sending(app.grpc_addr, b"").await;
    let grpc_part = closed_after_sending(app.grpc_addr, b"PRI * HTTP/2.0\r\n").await;

    assert!(http_silent, "HTTP: a connection sending nothing is closed");
    assert!(
        http_part,
        "HTTP: a connection sending part of a preface is closed"
    );
    assert!(grpc_silent, "gRPC: a connection sending nothing is closed");
    assert!(
        grpc_part,
        "gRPC: a connection sending part of the preface is closed"
    );
    // And both fronts go on serving.
    app.post_ok(payload("seed_example.json")).await;
    let stored = app
        .grpc()
        .await
        .list_recordings(crate::helpers::authed(Default::default()))
        .await
        .unwrap()
        .into_inner()
        .recordings
        .len();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_connection_that_sent_its_request_may_stay_idle_longer() {
    let app = app().await;
    // A WatchEvents stream with nothing to say for several times the opening deadline.
    let mut stream = app.watch(WatchEventsRequest::default()).await;
    tokio::time::sleep(OPENING * 4).await;
    app.post_ok(payload("seed_example.json")).await;
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the event arrives")
        .expect("the stream is still open")
        .expect("and not ended");
    assert_eq!(event.sequence, 1);

    // An HTTP/1 request sent slowly, but its first bytes in time: hyper's header deadline
    // (the same setting) applies from there, not the opening one.
    let mut conn = TcpStream::connect(app.http_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(OPENING / 2).await;
    conn.write_all(b"host: x\r\n\r\n").await.unwrap();
    let mut reply = [0u8; 64];
    let n = conn.read(&mut reply).await.unwrap();
    assert!(reply[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn an_http2_client_of_the_http_front_that_stops_answering_pings_is_disconnected() {
    let app = spawn_app_with(|s| s.keepalive = (Duration::from_millis(200), OPENING)).await;
    // The preface and an empty SETTINGS frame, then silence (never reads, never acks).
    let mut tcp = TcpStream::connect(app.http_addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // By now the server has pinged, waited and closed: reading drains what it sent, then
    // ends.
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received)).await;
    assert!(
        read.is_ok(),
        "the server keeps an HTTP/2 connection whose client no longer answers"
    );
}

/// A connection to each address that sent its bytes and then nothing, kept open.
async fn held_after_sending(sends: &[(std::net::SocketAddr, &[u8])]) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for &(addr, first) in sends {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(first).await.unwrap();
        held.push(conn);
    }
    held
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_that_sent_no_request() {
    let mut app = spawn_app_with(|s| s.args.header_read_timeout = Duration::from_secs(120)).await;
    // Connections that have sent nothing, or part of the preface, on both ports.
    let held = held_after_sending(&[
        (app.grpc_addr, b""),
        (app.grpc_addr, b"PRI * HTTP/2.0\r\n"),
        (app.http_addr, b""),
        (app.http_addr, b"PRI * HTTP/2.0\r\n"),
    ])
    .await;
    // Accepted by now (the accept loop runs on an otherwise idle server).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = tokio::time::timeout(Duration::from_secs(20), app.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited for connections that never sent a request (deadline 120 s)"
    );
    drop(held);
}

/// A raw HTTP/1 `GET /healthz` on a new connection; `Some(status line)` if answered
/// within `wait`.
async fn healthz_within(addr: std::net::SocketAddr, wait: Duration) -> Option<String> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = [0u8; 64];
    let n = tokio::time::timeout(wait, conn.read(&mut reply))
        .await
        .ok()?
        .unwrap();
    let text = String::from_utf8_lossy(&reply[..n]);
    Some(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn each_port_holds_at_most_max_connections_and_the_next_waits_for_a_free_one() {
    let app = spawn_app_with(|s| {
        s.args.max_connections = 2;
        s.args.header_read_timeout = Duration::from_secs(120);
    })
    .await;
    // Two connections on each port that started a request and went quiet.
    let mut held = held_after_sending(&[
        (app.http_addr, b"GET /healthz HTTP/1.1\r\n"),
        (app.http_addr, b"GET /healthz HTTP/1.1\r\n"),
        (app.grpc_addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        (app.grpc_addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ])
    .await;

    // A third connection on each port is not taken up while two are open…
    let waiting_http = tokio::spawn(healthz_within(app.http_addr, Duration::from_secs(20)));
    let grpc_addr = app.grpc_addr;
    let waiting_grpc = tokio::spawn(crate::helpers::health_check(grpc_addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting_http.is_finished(),
        "HTTP: a third connection waits"
    );
    assert!(
        !waiting_grpc.is_finished(),
        "gRPC: a third connection waits"
    );

    // …and is served as soon as one closes.
    held.remove(0);
    held.remove(1);
    let http = tokio::time::timeout(Duration::from_secs(10), waiting_http)
        .await
        .expect("HTTP: served once a connection closed")
        .unwrap();
    assert_eq!(http.as_deref(), Some("HTTP/1.1 200 OK"));
    let grpc = tokio::time::timeout(Duration::from_secs(10), waiting_grpc)
        .await
        .expect("gRPC: served once a connection closed")
        .unwrap();
    assert_eq!(grpc.unwrap(), 1, "SERVING");
}

#[tokio::test]
async fn zero_connections_watchers_header_deadline_or_connection_age_are_refused_at_start() {
    use recording_events::config::Settings;
    use recording_events::startup::Application;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let refused = |configure: fn(&mut Settings)| {
        let mut settings = Settings::for_tests(&url, crate::helpers::TOKEN);
        configure(&mut settings);
        async move {
            let error = Application::build(settings).await.err().expect("refused");
            format!("{error:#}")
        }
    };
    let zero_connections = refused(|s| s.args.max_connections = 0).await;
    assert!(
        zero_connections.contains("--max-connections: must be at least 1"),
        "{zero_connections}"
    );
    let zero_streams = refused(|s| s.args.max_concurrent_streams = 0).await;
    assert!(
        zero_streams.contains("--max-concurrent-streams: must be at least 1"),
        "{zero_streams}"
    );
    let zero_watchers = refused(|s| s.args.max_watchers = 0).await;
    assert!(
        zero_watchers.contains("--max-watchers: must be at least 1"),
        "{zero_watchers}"
    );
    let zero_deadline = refused(|s| s.args.header_read_timeout = Duration::ZERO).await;
    assert!(
        zero_deadline.contains("--header-read-timeout: must be longer than 0"),
        "{zero_deadline}"
    );
    let zero_age = refused(|s| s.args.max_connection_age = Some(Duration::ZERO)).await;
    assert!(
        zero_age.contains("--max-connection-age: must be longer than 0"),
        "{zero_age}"
    );
}

#[tokio::test]
async fn a_request_that_never_finishes_holds_shutdown_only_for_the_shutdown_timeout() {
    let mut app = spawn_app_with(|s| {
        s.args.body_read_timeout = Duration::from_secs(120);
        s.args.shutdown_timeout = Duration::from_secs(1);
    })
    .await;
    // A callback whose body never comes: in flight until its 120 s body deadline.
    let held = held_after_sending(&[(
        app.http_addr,
        format!(
            "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Bearer {}\r\ncontent-length: 1000\r\n\r\n{{",
            crate::helpers::CALLBACK,
            crate::helpers::TOKEN
        )
        .as_bytes(),
    )])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(20), app.shutdown()).await;

    assert!(
        stopped.is_ok(),
        "shutdown waited past --shutdown-timeout (1 s; the default is 30 s)"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the request in flight was given the timeout"
    );
    drop(held);
}

#[tokio::test]
async fn a_grpc_connection_past_max_connection_age_is_asked_to_close_without_cutting_streams() {
    let app = spawn_app_with(|s| s.args.max_connection_age = Some(Duration::from_secs(1))).await;
    // A watcher: its stream outlives its connection's age.
    let mut watcher = app.watch_after(0).await;
    // A connection with no stream open: closed once asked to.
    let tcp = TcpStream::connect(app.grpc_addr).await.unwrap();
    let (_send, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();

    let closed = tokio::time::timeout(Duration::from_secs(30), conn).await;
    app.post_ok(payload("seed_example.json")).await;
    let watched = tokio::time::timeout(Duration::from_secs(30), watcher.message()).await;

    assert!(
        matches!(closed, Ok(Ok(()))),
        "the server closes an idle connection past --max-connection-age: {closed:?}"
    );
    let event = watched
        .expect("the watcher is still served")
        .unwrap()
        .unwrap();
    assert_eq!(event.sequence, 1);
}

/// One gRPC connection carries at most --max-concurrent-streams calls at once: a further
/// call waits (HTTP/2 flow, no error) until one ends; other connections are not held up.
#[tokio::test]
async fn a_connection_carries_at_most_max_concurrent_streams_calls_at_once() {
    let app = spawn_app_with(|s| s.args.max_concurrent_streams = 2).await;
    let client = app.grpc().await;
    let watch =
        |mut client: recording_events::pb::v1::recording_event_client::RecordingEventClient<
            tonic::transport::Channel,
        >| async move {
            client
                .watch_events(crate::helpers::authed(WatchEventsRequest::default()))
                .await
                .unwrap()
                .into_inner()
        };
    let first = watch(client.clone()).await;
    let _second = watch(client.clone()).await;

    let third = tokio::spawn(watch(client.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third call on a full connection waits"
    );
    // Another connection is not held up.
    let _elsewhere = app.watch_after(0).await;
    drop(first);
    tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("the waiting call goes ahead once a stream ends")
        .unwrap();
}

/// The streams open without a token (health `Watch`, reflection) are capped over all
/// connections (at --max-watchers, apart from WatchEvents' own cap): one more is refused
/// with RESOURCE_EXHAUSTED at once, health `Check` and WatchEvents still answer, and a
/// closed stream frees its place.
#[tokio::test]
async fn unauthenticated_streams_beyond_the_cap_are_refused_until_one_closes() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let app = spawn_app_with(|s| s.args.max_watchers = 2).await;
    let watch_health = || async {
        // Each on a connection of its own: the cap is over all connections.
        HealthClient::new(app.channel().await)
            .watch(HealthCheckRequest::default())
            .await
    };
    let mut first = watch_health().await.unwrap().into_inner();
    let mut second = watch_health().await.unwrap().into_inner();
    for open in [&mut first, &mut second] {
        assert!(
            open.message().await.unwrap().is_some(),
            "the status is sent"
        );
    }

    let refused = watch_health().await.unwrap_err();
    crate::helpers::assert_at_cap(
        &refused,
        "streams: 2 health Watch and reflection streams are open, the most this server \
         takes (--max-watchers); retry later",
    );
    let check = HealthClient::new(app.channel().await)
        .check(HealthCheckRequest::default())
        .await;
    assert!(check.is_ok(), "health Check is not capped: {check:?}");
    let watch_events = app
        .grpc()
        .await
        .watch_events(crate::helpers::authed(WatchEventsRequest::default()))
        .await;
    assert!(watch_events.is_ok(), "WatchEvents has its own cap");

    drop(first);
    crate::helpers::once_a_place_is_free(watch_health).await;
}
