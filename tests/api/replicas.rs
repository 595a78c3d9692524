//! Several replicas on one PostgreSQL database: every replica sees every replica's
//! callbacks, idempotency holds across them, and sequences stay gap-free.

use std::sync::Arc;
use std::time::Duration;

use recording_events::pb::v1::WatchEventsRequest;
use serde_json::json;

use crate::helpers::{
    TestApp, alarm_lookup, authed, payload_json, spawn_postgres_app, spawn_replica,
};

#[tokio::test]
async fn a_callback_stored_by_one_replica_is_found_and_watched_on_another() {
    let a = spawn_postgres_app().await;
    let b = spawn_replica(&a).await;
    let mut watch_on_b = b.watch(WatchEventsRequest::default()).await;

    a.post_ok(payload_json("seed_example.json").to_string())
        .await;
    // Redelivered to the other replica: still one event.
    b.post_ok(payload_json("seed_example.json").to_string())
        .await;

    let event = tokio::time::timeout(Duration::from_secs(10), watch_on_b.message())
        .await
        .expect("the event reaches the other replica's watcher")
        .unwrap()
        .unwrap();
    assert_eq!(event.sequence, 1);
    let found = b
        .grpc()
        .await
        .find_recordings(authed(alarm_lookup()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.matches.len(), 1);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn concurrent_writes_through_two_replicas_get_gap_free_sequences() {
    let a = Arc::new(spawn_postgres_app().await);
    let b = Arc::new(spawn_replica(&a).await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut body = payload_json("seed_example.json");
            body["asset_id"] = json!(format!("replica-{i}"));
            app.post_ok(body.to_string()).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    assert_eq!(a.count("SELECT count(*) FROM events").await, 200);
    assert_eq!(a.count("SELECT max(sequence) FROM events").await, 200);
    assert_eq!(
        a.count("SELECT count(DISTINCT sequence) FROM events").await,
        200
    );
}

#[tokio::test]
async fn a_commit_is_announced_naming_the_table_written() {
    use futures_util::StreamExt;
    use tokio_postgres::AsyncMessage;
    let app = spawn_postgres_app().await;
    let (client, mut connection) =
        tokio_postgres::connect(&app.database_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (heard, mut announcements) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = heard.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute("LISTEN recording_events")
        .await
        .unwrap();
    let table: String = client
        .query_one("SELECT 'events'::regclass::oid::text", &[])
        .await
        .unwrap()
        .get(0);

    app.post_ok(payload_json("seed_example.json").to_string())
        .await;

    // Deployments in other schemas (other tests) announce on the same channel: their
    // replicas' listeners tell them apart by the table named.
    tokio::time::timeout(Duration::from_secs(30), async {
        while announcements.recv().await.unwrap() != table {}
    })
    .await
    .expect("the commit is announced with the oid of the table it wrote");
}

/// A session of the test's own holding `app`'s append lock (as a replica's writer in the
/// middle of a transaction does) until it commits, for as long as the test needs.
pub async fn hold_append_lock(app: &TestApp) -> tokio_postgres::Client {
    let holder = app.database().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .batch_execute(&recording_events::store::postgres::TAKE_APPEND_LOCK)
        .await
        .unwrap();
    holder
        .batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        .await
        .unwrap();
    holder
}

/// Waits until another session waits for the append lock `holder` holds.
pub async fn until_someone_waits_behind(holder: &tokio_postgres::Client) {
    let waiting = "SELECT count(*) FROM pg_locks w JOIN pg_locks h ON h.locktype = 'advisory' \
         AND w.locktype = 'advisory' AND w.classid = h.classid AND w.objid = h.objid \
         AND w.objsubid = h.objsubid \
         WHERE h.pid = pg_backend_pid() AND h.granted AND h.mode = 'ExclusiveLock' \
         AND NOT w.granted";
    for _ in 0..600 {
        if holder
            .query_one(waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no writer came to wait for the append lock within 30 s");
}

#[tokio::test]
async fn a_deployment_in_another_schema_does_not_wait_for_this_ones_writes() {
    let here = spawn_postgres_app().await;
    let elsewhere = spawn_postgres_app().await;
    let holder = hold_append_lock(&here).await;

    // The other schema's writes go on while this one's are held (for ever: without a
    // lock per schema this would never finish; the bound is generous because the old
    // database-wide lock, taken by another test at the same time, may delay it a little).
    tokio::time::timeout(
        Duration::from_secs(60),
        elsewhere.post_ok(payload_json("seed_example.json").to_string()),
    )
    .await
    .expect("a callback to another schema's deployment is not held by this one's lock");

    // This schema's are held until the lock is released.
    held_until_committed(here, holder).await;
}

/// A callback to `app` waits for the lock `holder` holds, and is stored once it commits.
async fn held_until_committed(app: TestApp, holder: tokio_postgres::Client) {
    let app = Arc::new(app);
    let posting = tokio::spawn({
        let app = app.clone();
        async move {
            app.post_ok(payload_json("seed_example.json").to_string())
                .await;
        }
    });
    until_someone_waits_behind(&holder).await;
    assert!(!posting.is_finished());
    holder.batch_execute("COMMIT").await.unwrap();
    posting.await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn a_replica_cut_off_while_holding_the_append_lock_holds_the_others_up_for_seconds() {
    use crate::db_proxy::{DbProxy, Passing};
    use crate::helpers::spawn_replica_with;
    let proxy = DbProxy::start().await;
    let direct = spawn_postgres_app().await;
    let cut_off = Arc::new(spawn_replica_with(&direct, |s| proxy.route(s)).await);
    let callback = crate::helpers::seed_with_asset;

    // The replica behind the proxy gets the lock while the proxy stops passing bytes, in
    // either direction: it holds the lock, and nothing it sends (nor its closing the
    // connection) reaches the database any more.
    let holder = hold_append_lock(&direct).await;
    let first = tokio::spawn({
        let (cut_off, body) = (cut_off.clone(), callback("to-the-cut-off-replica"));
        async move { cut_off.post_callback(body).await }
    });
    until_someone_waits_behind(&holder).await;
    proxy.set(Passing::Held);
    holder.batch_execute("COMMIT").await.unwrap();

    // The other replica's writes wait only until the database ends the cut-off one's idle
    // transaction (without that: until the database notices the connection is gone,
    // hours of TCP keep-alive).
    tokio::time::timeout(
        Duration::from_secs(60),
        direct.post_ok(callback("to-the-other-replica")),
    )
    .await
    .expect("the other replica's callback is stored within a minute");

    // The cut-off replica answers its callback (UNAVAILABLE, to be sent again) once the
    // batch has taken too long, instead of waiting for ever.
    let reply = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the cut-off replica answers within a minute")
        .unwrap();
    reply.assert_error(503, "UNAVAILABLE", "the store is unavailable");

    // Reconnected, it takes the retry; nothing was stored twice, no sequence skipped.
    proxy.set(Passing::Through);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cut_off
        .post_callback(callback("to-the-cut-off-replica"))
        .await
        .status
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the retry is taken within a minute of the database's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(direct.count("SELECT count(*) FROM events").await, 2);
    assert_eq!(direct.count("SELECT max(sequence) FROM events").await, 2);
}

#[tokio::test]
async fn a_replica_of_the_previous_version_still_excludes_this_ones_writes() {
    // Before the lock was per schema, every replica took this one database-wide lock,
    // exclusively: during a rolling upgrade such a replica and a new one still take
    // turns, so sequences stay in commit order.
    const PREVIOUS_APPEND_LOCK: i64 = 0x7265_635f_6576_7473;
    let app = spawn_postgres_app().await;
    let previous = app.database().await;
    previous.batch_execute("BEGIN").await.unwrap();
    previous
        .execute("SELECT pg_advisory_xact_lock($1)", &[&PREVIOUS_APPEND_LOCK])
        .await
        .unwrap();
    held_until_committed(app, previous).await;
}
