//! Reads from a PostgreSQL that stops answering: bounded, the work the database was
//! left with cancelled, and no connection of the pool left stuck behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use recording_events::pb::v1::{FindRecordingsRequest, FindRecordingsResponse, WatchEventsRequest};

use crate::db_proxy::{DbProxy, Passing};
use crate::helpers::{TestApp, alarm_lookup, authed, payload};

async fn find(
    app: &TestApp,
    request: tonic::Request<FindRecordingsRequest>,
) -> Result<FindRecordingsResponse, tonic::Status> {
    app.grpc()
        .await
        .find_recordings(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_lookup_the_database_never_answers_is_refused_in_seconds_and_the_next_ones_are_served() {
    let proxy = DbProxy::start().await;
    let app = crate::helpers::spawn_postgres_app_with(|s| proxy.route(s)).await;
    app.post_ok(payload("seed_example.json")).await;

    // The database host stops answering on the connections the pool holds (a caller
    // without a deadline of its own would otherwise wait for ever).
    proxy.set(Passing::Held);
    let lookups =
        futures_util::future::join_all((0..3).map(|_| find(&app, authed(alarm_lookup()))));
    let refused = tokio::time::timeout(Duration::from_secs(60), lookups)
        .await
        .expect("every lookup is answered within a minute while the database says nothing");
    for refused in refused {
        let status = refused.expect_err("nothing to read while the database says nothing");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "the store is unavailable, retry later");
    }
    let (_, metrics) = app.get_text("/metrics").await;
    let abandoned: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recording_events_store_connections_abandoned_total "))
        .expect("abandoned connections are counted")
        .parse()
        .unwrap();
    assert!(abandoned >= 1.0, "{abandoned}");

    // Back: lookups are served again (on new connections: the stuck ones were closed),
    // not queued behind what the stuck ones were left waiting for.
    proxy.set(Passing::Through);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), find(&app, authed(alarm_lookup()))).await
        {
            Ok(Ok(found)) => {
                assert_eq!(found.matches.len(), 1);
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "lookups are served within a minute of the database's return: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sessions waiting for a lock on the app's `recordings` table.
pub async fn waiting_on_recordings(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_locks WHERE relation = 'recordings'::regclass AND NOT granted",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits until `how_many` sessions wait for a lock on the app's `recordings` table.
async fn until_waiting_on_recordings(db: &tokio_postgres::Client, how_many: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_on_recordings(db).await < how_many {
        assert!(
            Instant::now() < deadline,
            "the lookups never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session of the test's own holding the app's `recordings` table, as an operator's
/// maintenance would, until it commits: lookups wait for it.
async fn lock_recordings(app: &TestApp) -> tokio_postgres::Client {
    let operator = app.database().await;
    operator
        .batch_execute("BEGIN; LOCK TABLE recordings IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    operator
}

#[tokio::test]
async fn a_lookup_whose_caller_gave_up_stops_waiting_in_the_database() {
    let app = Arc::new(crate::helpers::spawn_postgres_app().await);
    app.post_ok(payload("seed_example.json")).await;

    let operator = lock_recordings(&app).await;
    let mut impatient = authed(alarm_lookup());
    impatient.set_timeout(Duration::from_millis(500));
    let status = find(&app, impatient)
        .await
        .expect_err("the table is locked");
    assert_ne!(status.code(), tonic::Code::Ok);

    // The caller is gone: so is its statement, cancelled rather than left queued for the
    // lock (and holding a pooled connection) until the maintenance ends.
    let observer = app.database().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_on_recordings(&observer).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned lookup still waits in the database after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A patient caller waits until the maintenance ends, and is served.
    let patient = tokio::spawn({
        let app = app.clone();
        async move { find(&app, authed(alarm_lookup())).await }
    });
    until_waiting_on_recordings(&observer, 1).await;
    operator.batch_execute("COMMIT").await.unwrap();
    let found = patient
        .await
        .unwrap()
        .expect("served once the table is free");
    assert_eq!(found.matches.len(), 1);
}

/// Runs `how_many` lookups at once, held behind an operator's lock until `waiting` of them
/// wait for it (each on a pooled connection of its own); what they found.
async fn lookups_at_once(
    app: &Arc<TestApp>,
    how_many: usize,
    waiting: i64,
) -> Vec<FindRecordingsResponse> {
    let operator = lock_recordings(app).await;
    let lookups: Vec<_> = (0..how_many)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { find(&app, authed(alarm_lookup())).await })
        })
        .collect();
    until_waiting_on_recordings(&app.database().await, waiting).await;
    operator.batch_execute("COMMIT").await.unwrap();
    let mut found = Vec::new();
    for lookup in lookups {
        found.push(
            lookup
                .await
                .unwrap()
                .expect("served once the table is free"),
        );
    }
    found
}

#[tokio::test]
async fn once_a_silent_database_answers_again_the_next_lookup_is_served() {
    let proxy = DbProxy::start().await;
    let app = Arc::new(crate::helpers::spawn_postgres_app_with(|s| proxy.route(s)).await);
    app.post_ok(payload("seed_example.json")).await;
    // Eight pooled connections, idle.
    lookups_at_once(&app, 8, 8).await;

    // The host goes silent (it acknowledges, never answers): every connection the pool
    // holds is lost, though none says so.
    proxy.set(Passing::Silent);
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all((0..2).map(|_| find(&app, authed(alarm_lookup())))),
    )
    .await
    .expect("every lookup is answered within a minute while the database says nothing");
    for refused in refused {
        let status = refused.expect_err("nothing to read while the database says nothing");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }

    // Back: the next lookup is served on a new connection, not handed one of those the
    // silence took to time out in its turn.
    proxy.set(Passing::Through);
    let found = find(&app, authed(alarm_lookup()))
        .await
        .expect("served as soon as the database answers");
    assert_eq!(found.matches.len(), 1);
}

#[tokio::test]
async fn a_replica_opens_no_more_database_connections_than_its_pool_size() {
    let name = format!(
        "re-pool-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let app = Arc::new(
        crate::helpers::spawn_postgres_app_with(|s| {
            s.args.database_pool_size = 2;
            let url = format!("{}&application_name={name}", s.args.database_url.expose());
            s.args.database_url = url.parse().unwrap();
        })
        .await,
    );
    app.post_ok(payload("seed_example.json")).await;

    // Six lookups at once, held by an operator's lock until two of them wait for it.
    for found in lookups_at_once(&app, 6, 2).await {
        assert_eq!(found.matches.len(), 1);
    }

    // The two pooled connections the six took turns on, and the listener's.
    let sessions: i64 = app
        .database()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 3);
}

#[tokio::test]
async fn watchers_get_new_events_again_once_a_database_that_went_silent_answers() {
    let proxy = DbProxy::start().await;
    let direct = crate::helpers::spawn_postgres_app().await;
    let behind = crate::helpers::spawn_replica_with(&direct, |s| proxy.route(s)).await;
    let mut watch = behind.watch(WatchEventsRequest::default()).await;
    let callback = crate::helpers::seed_with_asset;
    direct.post_ok(callback("before")).await;
    let before = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the event reaches the watcher")
        .unwrap()
        .unwrap();
    assert_eq!(before.sequence, 1);

    // The database host goes silent for the watched replica long enough for its listener
    // to give up on its connection and connect again, into the silence.
    proxy.set(Passing::Silent);
    tokio::time::sleep(Duration::from_secs(14)).await;
    proxy.set(Passing::Through);

    // Its listener does not stay in that connection: the next callback (taken by the
    // other replica) reaches the watcher once the database answers again.
    direct.post_ok(callback("after")).await;
    let after = tokio::time::timeout(Duration::from_secs(90), watch.message())
        .await
        .expect("the watcher gets new events again within 90 s of the database's return")
        .unwrap()
        .unwrap();
    assert_eq!(after.sequence, 2);
}
