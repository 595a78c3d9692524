//! The binary as an operator runs it: addresses and a generated token printed at start,
//! the token kept for restarts, SIGTERM stops it cleanly (the WAL copied back), SIGHUP
//! reloads TLS files, SIGKILL loses nothing acknowledged, descriptors run short and come
//! back, and what it refuses or serves is counted in /metrics.

mod counted;
mod crash;
mod descriptors;
mod lifecycle;
mod migrate;
mod pool;
mod reload;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use http::Method;

pub(super) struct Started {
    pub(super) child: Child,
    pub(super) stdout: std::thread::JoinHandle<String>,
    pub(super) stderr: std::thread::JoinHandle<String>,
    pub(super) http: String,
    pub(super) grpc: String,
}

/// Starts the binary on ports 0 and waits for both listening lines.
pub(super) fn start(db: &str) -> Started {
    start_with(db, &[])
}

/// [`start`] with more flags.
pub(super) fn start_with(db: &str, flags: &[&str]) -> Started {
    start_by(
        Command::new(env!("CARGO_BIN_EXE_recording-events")),
        db,
        flags,
    )
}

/// Starts the service by `command` (the binary, or a shell that runs it) with `flags`, on
/// `db`: a SQLite file's path, or a database URL.
pub(super) fn start_by(mut command: Command, db: &str, flags: &[&str]) -> Started {
    let url = if db.contains("://") {
        db.to_owned()
    } else {
        format!("sqlite://{db}")
    };
    if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
        command.env("RUST_LOG", "info");
    }
    let mut child = command
        .args(["--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"])
        .arg(format!("--database-url={url}"))
        .args(flags)
        .env_remove("RECORDING_EVENTS_API_TOKENS")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The log is read on a thread of its own from the start, so that a server that never
    // gets to listening fails the test within a minute, with what it logged, rather than
    // holding it forever.
    let (each_line, logged) = std::sync::mpsc::channel::<String>();
    let stderr = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            let _ = each_line.send(line);
        }
        seen
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut http, mut grpc) = (None, None);
    while http.is_none() || grpc.is_none() {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match logged.recv_timeout(wait) {
            Ok(line) => line,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not print both addresses ({why:?}); its log:\n{}",
                    stderr.join().unwrap()
                );
            }
        };
        let addr = |marker: &str| {
            let (_, rest) = line.split_once(marker)?;
            let end = rest.find(['"', ' ']).unwrap_or(rest.len());
            Some(rest[..end].trim().to_owned())
        };
        http = http.or_else(|| addr("http listening on "));
        grpc = grpc.or_else(|| addr("grpc listening on "));
    }
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
pub(super) fn sigterm_and_wait(mut started: Started) -> (String, String) {
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
pub(super) fn under_ulimit(limit: &str) -> Command {
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        &format!("ulimit {limit} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_recording-events"),
    ]);
    shell
}

/// Sends SIGHUP to the service (it reloads its TLS files).
pub(super) fn hangup(started: &Started) {
    signal(started, "-HUP");
}

/// Sends a signal (`kill`'s flag, e.g. `-TERM`) to the service.
pub(super) fn signal(started: &Started, which: &str) {
    let status = Command::new("kill")
        .args([which, &started.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `GET /metrics` on its own HTTP/1 connection, closed after the reply.
pub(super) async fn metrics_text(http: impl tokio::net::ToSocketAddrs) -> String {
    get_raw(http, "/metrics").await
}

/// `GET path` on its own HTTP/1 connection: the whole reply, status line first.
pub(super) async fn get_raw(http: impl tokio::net::ToSocketAddrs, path: &str) -> String {
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

pub(super) async fn post_seed(addr: &str, token: &str) -> u16 {
    post(addr, token, crate::helpers::payload("seed_example.json")).await
}

/// Posts `body` as a callback on its own connection: the reply's HTTP status.
pub(super) async fn post(addr: &str, token: &str, body: String) -> u16 {
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
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(60), client.request(req))
        .await
        .expect("the callback is answered within a minute");
    reply.unwrap().status().as_u16()
}
