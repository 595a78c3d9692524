//! The binary as an operator runs it: addresses and a generated token printed at start,
//! the token kept for restarts, SIGTERM stops it cleanly (the WAL copied back).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use http::Method;

struct Started {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    http: String,
}

/// Starts the binary on ports 0 and waits for both listening lines.
fn start(db: &str) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recording-events"))
        .args(["--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"])
        .arg(format!("--database-url=sqlite://{db}"))
        .env_remove("RECORDING_EVENTS_API_TOKENS")
        .env("RUST_LOG", "info")
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
        let addr = |marker: &str| line.split_once(marker).map(|(_, a)| a.trim().to_owned());
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
    }
}

fn sigterm_and_wait(mut started: Started) -> (String, String) {
    let status = Command::new("kill")
        .args(["-TERM", &started.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = started.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    (
        started.stdout.join().unwrap(),
        started.stderr.join().unwrap(),
    )
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

    let second = start(&db);
    let reply = post_seed(&second.http, &token).await;
    let (stdout, stderr) = sigterm_and_wait(second);

    assert_eq!(reply, 200, "the kept token still works");
    assert!(!stdout.contains(&token), "printed only once: {stdout}");
    assert!(stderr.contains("kept in"), "{stderr}");
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
    client.request(req).await.unwrap().status().as_u16()
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
