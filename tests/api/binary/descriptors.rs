//! Open files run short, and open connections are counted by port.

use super::*;

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
