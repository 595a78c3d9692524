//! An acknowledgement means "on disk": across restarts and under concurrency.

use serde_json::json;

use recording_events::domain::Callback;
use recording_events::domain::recording::id_for;
use rusqlite::params;

use recording_events::pb::v1::{FindRecordingsRequest, WatchEventsRequest};

use crate::helpers::{
    TestApp, authed, payload, payload_json, seed_request, spawn_app, spawn_app_in,
};

async fn an_acknowledged_callback_survives_a_restart(app: TestApp) {
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;

    let app = app.restart().await;

    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    // Still idempotent after the restart, and still serving.
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn concurrent_distinct_callbacks_are_all_acknowledged_and_stored() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = payload_json("seed_example.json");
            body["asset_id"] = json!(format!("asset-{i}"));
            app.post_callback(body.to_string()).await
        }));
    }
    for task in tasks {
        task.await.unwrap().assert_ok();
    }

    assert_eq!(app.count("SELECT count(*) FROM events").await, 300);
    assert_eq!(
        app.count("SELECT count(DISTINCT sequence) FROM events")
            .await,
        300
    );
}

#[tokio::test]
async fn a_full_ingest_queue_answers_429_and_loses_nothing_acknowledged() {
    // A queue of one: a burst must overflow it while the writer is busy with a commit.
    let app =
        std::sync::Arc::new(crate::helpers::spawn_app_with(|s| s.args.ingest_queue = 1).await);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut body = payload_json("seed_example.json");
                body["asset_id"] = json!(format!("burst-{i}"));
                app.post_callback(body.to_string()).await
            })
        })
        .collect();
    let (mut ok, mut throttled) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == 200 {
            reply.assert_ok();
            ok += 1;
        } else {
            reply.assert_error(
                429,
                "RESOURCE_EXHAUSTED",
                "too many callbacks waiting to be stored",
            );
            assert_eq!(reply.headers["retry-after"], "1");
            throttled += 1;
        }
    }

    assert!(throttled > 0, "the burst should overflow a queue of one");
    assert_eq!(ok + throttled, 300);
    assert_eq!(app.count("SELECT count(*) FROM events").await, ok);
    // Still serving once the burst is over.
    app.post_ok(payload_json("seed_example.json").to_string())
        .await;
}

#[tokio::test]
async fn a_full_ingest_queue_answers_resource_exhausted_over_grpc_and_loses_nothing_acknowledged() {
    let app =
        std::sync::Arc::new(crate::helpers::spawn_app_with(|s| s.args.ingest_queue = 1).await);
    let client = app.grpc().await;
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut req = crate::helpers::seed_request();
                req.asset_id = format!("grpc-burst-{i}");
                client.vod_call_back(crate::helpers::authed(req)).await
            })
        })
        .collect();
    let (mut ok, mut throttled) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(reply) => {
                assert_eq!(reply.get_ref().status, 0);
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.message().starts_with("too many callbacks waiting"));
                assert_eq!(
                    status.metadata().get("grpc-retry-pushback-ms").unwrap(),
                    "1000"
                );
                let details = tonic_types::StatusExt::get_error_details(&status);
                assert_eq!(
                    details.retry_info().unwrap().retry_delay,
                    Some(std::time::Duration::from_secs(1))
                );
                assert_eq!(details.error_info().unwrap().reason, "RESOURCE_EXHAUSTED");
                throttled += 1;
            }
        }
    }

    assert!(throttled > 0, "the burst should overflow a queue of one");
    assert_eq!(ok + throttled, 300);
    assert_eq!(app.count("SELECT count(*) FROM events").await, ok);
}

/// A database written by the first schema (duplicates keyed by fingerprint alone) is
/// upgraded in place: its events keep their sequences, a redelivery of a stored callback
/// is still a duplicate, and sequences continue after the highest ever handed out.
#[tokio::test]
async fn a_database_of_the_first_schema_is_upgraded_without_loss_or_recount() {
    let dir = tempfile::tempdir().unwrap();
    let seed = Callback::parse(seed_request()).unwrap();
    let id = id_for(&seed).unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO recordings (first_sequence, id, last_sequence, state, rank, task_over,
                 project_id, publish_domain, app, stream, record_format, task_id, job_id,
                 download_url, asset_id, play_url, obs_location, obs_bucket, obs_object,
                 create_time, update_time)
             VALUES (41, ?1, 41, 2, 3, 0, ?2, ?3, ?4, ?5, '', '', '', '', '', '', '', '', '', 0, 0)",
            params![id, seed.project_id, seed.publish_domain, seed.app, seed.stream],
        )
        .unwrap();
        for (sequence, fingerprint, recording) in [
            (41, seed.fingerprint(), Some(id.clone())),
            (57, [7u8; 32], None),
        ] {
            conn.execute(
                "INSERT INTO events (sequence, fingerprint, received_at, event_type, project_id,
                     publish_domain, app, stream, record_format, task_id, job_id, download_url,
                     asset_id, play_url, obs_location, obs_bucket, obs_object, auth_sign,
                     recording_id, raw_body)
                 VALUES (?1, ?2, 0, 'RECORD_FILE_COMPLETE', '', '', '', '', '', '', '', '', '',
                     '', '', '', '', '', ?3, ?4)",
                params![
                    sequence,
                    &fingerprint[..],
                    recording,
                    payload("seed_example.json")
                ],
            )
            .unwrap();
        }
        // The newest event is gone, but its sequence was handed out: it is never reused.
        conn.execute("DELETE FROM events WHERE sequence = 57", [])
            .unwrap();
    }

    let app = spawn_app_in(dir).await;
    let mut client = app.grpc().await;
    let again = client
        .vod_call_back(authed(seed_request()))
        .await
        .unwrap()
        .into_inner();
    let mut other = seed_request();
    other.asset_id = "another-file".into();
    let new = client
        .vod_call_back(authed(other))
        .await
        .unwrap()
        .into_inner();

    assert_eq!((again.duplicate, again.event_id), (true, 41));
    assert_eq!((new.duplicate, new.event_id), (false, 58));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM recordings").await, 2);
    // The events written before the upgrade replay from their stored bodies.
    let mut replay = client
        .watch_events(authed(WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = replay.message().await.unwrap().unwrap();
    assert_eq!(first.sequence, 41);
    let callback = first.event.expect("the callback");
    assert_eq!(
        (callback.stream.as_str(), callback.asset_id.as_str()),
        (seed.stream.as_str(), seed.asset_id.as_str())
    );
    assert_eq!(callback.file_size, seed.file_size);
    let second = replay.message().await.unwrap().unwrap();
    assert_eq!(second.sequence, 58);
}

crate::on_both_stores!(an_acknowledged_callback_survives_a_restart,);

#[tokio::test]
async fn a_clean_stop_leaves_every_callback_in_the_database_file_itself() {
    let mut app = spawn_app().await;
    for i in 0..50 {
        let mut body = payload_json("seed_example.json");
        body["asset_id"] = json!(format!("asset-{i}"));
        app.post_ok(body.to_string()).await;
    }

    app.shutdown().await;

    // Checkpointed before the stop returned: a copy of the file alone is complete.
    let wal = app.db_path.with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "{} still holds frames", wal.display());
    let copy = app.dir.path().join("copy.db");
    std::fs::copy(&app.db_path, &copy).unwrap();
    let events: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, 50);
}

/// A small tmpfs mounted on a fresh directory (needs root), unmounted on drop.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk {
            dir: Some(dir),
            path,
        })
    }

    fn grow(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        drop(self.dir.take());
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_once_there_is_room() {
    let Some(disk) = SmallDisk::mount("3M") else {
        // CI runs as root and sets this, so there the test cannot pass without running.
        assert!(
            std::env::var_os("RECORDING_EVENTS_TEST_MOUNT").is_none(),
            "RECORDING_EVENTS_TEST_MOUNT is set but a tmpfs cannot be mounted"
        );
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let db_dir = tempfile::TempDir::new_in(&disk.path).unwrap();
    let app = spawn_app_in(db_dir).await;
    // Each file a second longer than the one before, so that each widens its stream's
    // span: a span widened by a callback the full disk refused must not be taken as stored.
    let start = chrono::DateTime::parse_from_rfc3339("2020-08-17T09:30:16Z").unwrap();
    let span = |i: usize| chrono::Duration::seconds(1_000 + i as i64);
    let post = |i: usize| {
        let mut body = payload_json("seed_example.json");
        body["asset_id"] = json!(format!("asset-{i}"));
        body["end_time"] = json!((start + span(i)).to_rfc3339());
        app.post_callback(body.to_string())
    };

    // Fill the disk: callbacks are acknowledged until there is no room left.
    let (mut acknowledged, mut refused) = (0, None);
    for i in 0..2_000 {
        let reply = post(i).await;
        if reply.status == 200 {
            acknowledged += 1;
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a 3 MB disk fills before 2,000 callbacks");
    refused.assert_error(503, "UNAVAILABLE", "the store is unavailable, retry later");
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(acknowledged > 0);
    // Still full: refused again, and the server keeps answering.
    assert_eq!(post(5_000).await.status, 503);
    let healthz = app.request(http::Method::GET, "/healthz", &[], "").await;
    assert_eq!(healthz.status, 200);
    // A store started on the full disk is refused saying so, not as "disk I/O error".
    let other = format!("sqlite://{}", disk.path.join("other.db").display());
    let opened = recording_events::store::open(&other, 64, 16).await;
    let refusal = format!("{:#}", opened.err().expect("no room to open a store"));
    assert!(
        refusal.contains(&format!("the disk holding {} is full", disk.path.display())),
        "{refusal}"
    );
    // A first start there is refused for its store, and keeps no token that it never
    // showed working (the next start would not print it again).
    let first = disk.path.join("first.db");
    let started = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_recording-events"))
            .arg(format!("--database-url=sqlite://{}", first.display()))
            .args(["--http-addr=127.0.0.1:0", "--grpc-addr=127.0.0.1:0"])
            .env_remove("RECORDING_EVENTS_API_TOKENS")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert_eq!(started.status.code(), Some(1), "{stderr}");
    let path = disk.path.display();
    assert!(
        stderr.contains(&format!(
            "Error: cannot open the store \"sqlite://{path}/first.db\""
        )) && stderr.contains(&format!("the disk holding {path} is full")),
        "{stderr}"
    );
    assert!(!disk.path.join("first.db.token").exists());

    // Room again: the same callbacks (retried, as Huawei does) and new ones are taken.
    disk.grow("64M");
    for i in acknowledged..acknowledged + 100 {
        post(i).await.assert_ok();
    }
    post(5_000).await.assert_ok();
    // The longest file, refused once, is found in its last second.
    let last_second = start + span(5_000) - chrono::Duration::seconds(1);
    let found = app
        .grpc()
        .await
        .find_recordings(authed(FindRecordingsRequest {
            stream: "886_142279".into(),
            at: Some(prost_types::Timestamp {
                seconds: last_second.timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let found: Vec<String> = found
        .matches
        .into_iter()
        .map(|m| m.recording.unwrap().asset_id)
        .collect();
    assert_eq!(found, ["asset-5000"]);

    let stored = app.count("SELECT count(*) FROM events").await;
    assert_eq!(stored, acknowledged as i64 + 101);
    assert_eq!(
        app.count("SELECT count(DISTINCT sequence) FROM events")
            .await,
        stored
    );
}

#[tokio::test]
async fn a_second_service_on_the_same_sqlite_file_is_refused_until_the_first_stops() {
    use recording_events::config::Settings;
    use recording_events::startup::Application;
    let mut app = spawn_app().await;
    let url = format!("sqlite://{}", app.db_path.display());

    let second = Application::build(Settings::for_tests(&url, crate::helpers::TOKEN)).await;
    let refused = format!("{:#}", second.err().expect("a second service is refused"));
    app.shutdown().await;
    let after = Application::build(Settings::for_tests(&url, crate::helpers::TOKEN)).await;

    assert!(
        refused.contains(&format!(
            "is in use by another recording-events process (pid {})",
            std::process::id()
        )),
        "{refused}"
    );
    let lock_file = format!("{}.lock", app.db_path.display());
    assert!(refused.contains(&lock_file), "{refused}");
    assert!(
        after.is_ok(),
        "once the first has stopped: {:#}",
        after.err().unwrap()
    );
}

#[tokio::test]
async fn while_postgres_is_away_callbacks_are_refused_promptly_and_taken_once_it_is_back() {
    use crate::db_proxy::{DbProxy, Passing};
    use std::time::Duration;
    let proxy = DbProxy::start().await;
    let app = crate::helpers::spawn_postgres_app_with(|s| proxy.route(s)).await;
    app.post_ok(payload("seed_example.json")).await;
    let callbacks: Vec<String> = (0..20)
        .map(|i| {
            let mut callback = payload_json("seed_example.json");
            callback["asset_id"] = format!("during-the-outage-{i}").into();
            callback.to_string()
        })
        .collect();

    // The database goes away (its connections closed, new ones never answered): each
    // callback is answered, none waits for the others' failures in turn (20 × the 10 s
    // connection set-up bound, were a failed batch retried one by one).
    proxy.set(Passing::Cut);
    let replies = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(callbacks.iter().map(|c| app.post_callback(c.clone()))),
    )
    .await
    .expect("every callback is answered within a minute while the database is away");
    for reply in &replies {
        reply.assert_error(503, "UNAVAILABLE", "the store is unavailable");
    }

    // Back: the senders' retries are taken, each once.
    proxy.set(Passing::Through);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for callback in &callbacks {
        while app.post_callback(callback.clone()).await.status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "taken again within a minute of the database's return"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 21);
}

#[tokio::test]
async fn a_callback_postgres_refuses_fails_alone_and_the_rest_of_its_batch_is_stored() {
    use crate::helpers::seed_with_asset;
    use crate::replicas::{hold_append_lock, until_someone_waits_behind};
    use std::sync::Arc;
    use std::time::Duration;
    let app = Arc::new(crate::helpers::spawn_postgres_app().await);
    // The database refuses one callback's event (as it would a value it cannot store).
    app.database()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.asset_id = 'poison' THEN RAISE EXCEPTION 'refused for the test'; \
             END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        )
        .await
        .unwrap();
    // The writer held at one batch, the poison and nine others queue for the next.
    let holder = hold_append_lock(&app).await;
    let post = |asset: String| {
        let app = app.clone();
        tokio::spawn(async move { app.post_callback(seed_with_asset(&asset)).await })
    };
    let first = post("first".to_owned());
    until_someone_waits_behind(&holder).await;
    let next: Vec<_> = std::iter::once("poison".to_owned())
        .chain((0..9).map(|i| format!("good-{i}")))
        .map(post)
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = app.get_text("/metrics").await;
        if metrics.contains("recording_events_store_queue_depth 10") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ten callbacks queue: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().status, 200);
    let mut replies = Vec::new();
    for reply in next {
        replies.push(reply.await.unwrap());
    }
    replies[0].assert_error(503, "UNAVAILABLE", "the store is unavailable");
    for reply in &replies[1..] {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 10);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE asset_id = 'poison'")
            .await,
        0
    );
}
