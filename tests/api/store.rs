//! The Store contract, driven directly: a burst that lands in one batch (duplicates,
//! out-of-order lifecycle events, a task ending mid-batch) folds to the same recordings on
//! both backends.

use std::collections::BTreeMap;

use chrono::Utc;
use recording_events::domain::{Callback, RecordingState};
use recording_events::pb::v1::VodCallBackRequest;
use recording_events::store::{self, ListQuery, NewEvent};

use crate::helpers::payload;

fn callback(name: &str, edit: impl FnOnce(&mut VodCallBackRequest)) -> NewEvent {
    let raw = payload(name);
    let mut req: VodCallBackRequest = serde_json::from_str(&raw).unwrap();
    edit(&mut req);
    NewEvent::new(Callback::parse(req).unwrap(), raw, Utc::now())
}

/// A task's callbacks, in a scrambled order, with redeliveries.
fn scrambled_task() -> Vec<NewEvent> {
    let second = |r: &mut VodCallBackRequest| r.job_id = "job-0002".into();
    vec![
        callback("lifecycle_3_record_file_complete.json", |_| {}),
        callback("lifecycle_2_record_new_file_start.json", second),
        callback("lifecycle_4_record_over.json", |_| {}),
        callback("lifecycle_2_record_new_file_start.json", |_| {}),
        callback("lifecycle_3_record_file_complete.json", |r| {
            r.auth_timestamp = Some(7)
        }),
        callback("record_failed.json", |_| {}),
        callback("lifecycle_1_record_start.json", |_| {}),
        callback("lifecycle_2_record_new_file_start.json", second),
    ]
}

async fn burst_folds_to_the_same_recordings(url: String) {
    let store = store::open(&url, 64, 16).await.unwrap();

    // All appends are queued at once, so the writer takes them as one batch.
    let appended =
        futures_util::future::join_all(scrambled_task().into_iter().map(|ev| store.append(ev)))
            .await;

    let appended: Vec<_> = appended.into_iter().map(Result::unwrap).collect();
    assert_eq!(appended.iter().filter(|a| a.duplicate).count(), 2);
    let mut sequences: Vec<i64> = appended
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    let recordings = store
        .list_recordings(ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let states: BTreeMap<String, RecordingState> = recordings
        .iter()
        .map(|r| {
            (
                format!("{}@{:?}", r.job_id, r.start_time.map(|t| t.timestamp())),
                r.state,
            )
        })
        .collect();
    assert_eq!(
        states.into_iter().collect::<Vec<_>>(),
        [
            (
                format!("@{:?}", Some(1_795_773_600)),
                RecordingState::Failed
            ),
            (
                format!("job-0001@{:?}", Some(1_795_766_400)),
                RecordingState::Complete
            ),
            (
                format!("job-0002@{:?}", Some(1_795_766_400)),
                RecordingState::Ended
            ),
        ]
    );
    let complete = recordings.iter().find(|r| r.job_id == "job-0001").unwrap();
    assert_eq!(complete.file_size, Some(734_003_200));
    assert!(complete.task_over);
}

#[tokio::test]
async fn a_scrambled_burst_folds_the_same_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    burst_folds_to_the_same_recordings(format!("sqlite://{}", dir.path().join("s.db").display()))
        .await;
}

#[tokio::test]
async fn a_scrambled_burst_folds_the_same_on_postgres() {
    let schema = crate::helpers::fresh_schema().await;
    burst_folds_to_the_same_recordings(crate::helpers::schema_url(&schema)).await;
}

/// More events than one prune transaction takes: all that are due go, in several
/// transactions, and nothing else.
async fn prune_takes_every_due_event_in_chunks(url: String) {
    use chrono::TimeZone;
    let store = store::open(&url, 4096, 16).await.unwrap();
    let day_one = Utc.timestamp_opt(1_795_773_600, 0).unwrap();
    let day_three = day_one + chrono::Duration::days(2);
    let file = |i: usize, at| {
        let raw = payload("lifecycle_3_record_file_complete.json");
        let mut req: VodCallBackRequest = serde_json::from_str(&raw).unwrap();
        req.job_id = format!("job-{i}");
        NewEvent::new(Callback::parse(req).unwrap(), raw, at)
    };
    // Each append waits for its commit, so the sequences follow the received times.
    let old = futures_util::future::join_all((0..2_300).map(|i| store.append(file(i, day_one))));
    for appended in old.await {
        appended.unwrap();
    }
    let recent =
        futures_util::future::join_all((0..200).map(|i| store.append(file(10_000 + i, day_three))));
    for appended in recent.await {
        appended.unwrap();
    }

    let pruned = store
        .prune(day_one + chrono::Duration::days(1))
        .await
        .unwrap();
    let again = store
        .prune(day_one + chrono::Duration::days(1))
        .await
        .unwrap();

    assert_eq!((pruned.events, pruned.recordings), (2_300, 2_300));
    assert_eq!((again.events, again.recordings), (0, 0));
    assert_eq!(store.first_kept().await.unwrap(), 2_301);
    let kept = store
        .list_recordings(ListQuery {
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(kept.len(), 200);
    assert!(kept.iter().all(|r| r.first_sequence > 2_300));
    // The writer carries on after the removals (on SQLite they ran on another connection).
    let next = store.append(file(20_000, day_three)).await.unwrap();
    assert_eq!((next.sequence, next.duplicate), (2_501, false));
    store.close().await;
}

#[tokio::test]
async fn prune_takes_every_due_event_in_chunks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    prune_takes_every_due_event_in_chunks(format!(
        "sqlite://{}",
        dir.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test]
async fn prune_takes_every_due_event_in_chunks_on_postgres() {
    let schema = crate::helpers::fresh_schema().await;
    prune_takes_every_due_event_in_chunks(crate::helpers::schema_url(&schema)).await;
}

/// What PostgreSQL refuses for the data it was given (here text with U+0000, which the
/// service's validation keeps away) is a failure of that request, not "the store is
/// unavailable, retry later": the same request would fail again.
#[tokio::test]
async fn postgres_refusing_the_data_is_internal_not_unavailable() {
    use recording_events::error::Code;
    let schema = crate::helpers::fresh_schema().await;
    let store = store::open(&crate::helpers::schema_url(&schema), 64, 16)
        .await
        .unwrap();

    let refused = store.get_recording("a\0").await.unwrap_err();

    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert_eq!(refused.message(), "internal error");
    store.ping().await.unwrap();
    assert!(store.get_recording("a").await.unwrap().is_none());
}

/// URLs that name no usable store are refused by name, by `serve` and `migrate` alike,
/// without showing what follows a scheme (it may be a password).
#[tokio::test]
async fn database_urls_that_name_no_durable_store_are_refused_saying_why() {
    for (url, says) in [
        (
            "mysql://app:hunter2-password@db/x",
            "--database-url: unsupported scheme `mysql`; expected sqlite://PATH or postgres://…",
        ),
        (
            "recordings.db",
            "--database-url: `recordings.db` has no scheme; expected sqlite://PATH (e.g. \
             sqlite://recordings.db) or postgres://…",
        ),
        (
            "sqlite://",
            "--database-url: names no file; expected sqlite://PATH, e.g. sqlite://recordings.db",
        ),
        (
            "sqlite::memory:",
            "--database-url: an in-memory SQLite database would lose every acknowledged \
             callback when the process ends; give a file, e.g. sqlite://recordings.db",
        ),
        (
            "sqlite://file:events?mode=memory",
            "--database-url: an in-memory SQLite database would lose",
        ),
    ] {
        let opened = store::open(url, 64, 16).await.err().expect("refused");
        let migrated = store::migrate(url).await.expect_err("refused");
        for refusal in [format!("{opened:#}"), format!("{migrated:#}")] {
            assert!(refusal.starts_with(says), "{url}: {refusal}");
            assert!(!refusal.contains("hunter2"), "{refusal}");
        }
    }
}

/// A SQLite file another program made (tables but no schema of ours, or a schema version
/// it set) is refused by a start and by `migrate`, and left as it was.
#[tokio::test]
async fn another_programs_sqlite_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let tables = |path: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut names = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        names
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    for (name, setup, says) in [
        (
            "shop.db",
            "CREATE TABLE orders (id INTEGER); CREATE TABLE customers (id INTEGER)",
            "not a recording-events database: it holds other tables (customers, orders) and \
             no recording-events schema",
        ),
        (
            "versioned.db",
            "CREATE TABLE orders (id INTEGER); PRAGMA user_version = 7",
            "not a recording-events database: its schema version (7) was set by another \
             program (no `meta` table)",
        ),
    ] {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(setup)
            .unwrap();
        let before = tables(&path);
        let url = format!("sqlite://{}", path.display());

        let opened = store::open(&url, 64, 16).await.err().expect("refused");
        let migrated = store::migrate(&url).await.expect_err("refused");

        for refusal in [format!("{opened:#}"), format!("{migrated:#}")] {
            assert!(refusal.contains(says), "{name}: {refusal}");
        }
        assert_eq!(tables(&path), before, "{name} was changed");
    }
}

/// A schema whose `schema_migrations` table is another migration tool's (here
/// golang-migrate's) is refused before its versions are taken for this service's, and
/// nothing is created in it.
#[tokio::test]
async fn a_schema_migrations_table_of_another_tool_is_refused_on_postgres() {
    let schema = crate::helpers::fresh_schema().await;
    let client = crate::helpers::connect(&crate::helpers::postgres_url()).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.schema_migrations (version bigint PRIMARY KEY, \
             dirty boolean NOT NULL); \
             INSERT INTO {schema}.schema_migrations VALUES (20240101120000, false)"
        ))
        .await
        .unwrap();
    let url = crate::helpers::schema_url(&schema);

    let opened = store::open(&url, 64, 4).await.err().expect("refused");
    let migrated = store::migrate(&url).await.expect_err("refused");

    for refusal in [format!("{opened:#}"), format!("{migrated:#}")] {
        assert!(
            refusal.contains(
                "the schema_migrations table in this schema is another tool's (version \
                 bigint, dirty boolean; ours is version integer, applied_at timestamp with \
                 time zone)"
            ),
            "{refusal}"
        );
    }
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "only the other tool's table is there");
}

/// A session whose commits would not wait for the disk (`synchronous_commit = off`, here
/// from the URL as a database or role setting would give it) is made durable; the levels
/// that do wait are left as they are.
#[tokio::test]
async fn postgres_sessions_that_would_not_wait_for_the_disk_are_made_durable() {
    use recording_events::store::postgres::durable_commits;
    let base = crate::helpers::postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    for (level, changed, after) in [
        ("off", true, "on"),
        ("local", false, "local"),
        ("on", false, "on"),
        ("remote_apply", false, "remote_apply"),
    ] {
        let session = crate::helpers::connect(&format!(
            "{base}{sep}options=-c%20synchronous_commit%3D{level}"
        ))
        .await;

        assert_eq!(durable_commits(&session).await.unwrap(), changed, "{level}");

        let now: String = session
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(now, after, "{level}");
    }
}
