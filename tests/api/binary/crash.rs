//! SIGKILL under load loses nothing acknowledged.

use http::Method;

use super::*;

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
