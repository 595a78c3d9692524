//! `recording-events migrate`: the schema migrations alone, before a start.

use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use recording_events::store::postgres::migrate::MIGRATION_LOCK;

use super::*;
use crate::helpers::{connect, fresh_schema, schema_url};

/// How many migrations `dir` (under `migrations/`) holds: the current schema version.
fn migrations(dir: &str) -> usize {
    std::fs::read_dir(format!("migrations/{dir}"))
        .unwrap()
        .count()
}

/// `recording-events migrate --database-url URL`, run to its end.
fn migrate(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recording-events"))
        .args(["migrate", "--database-url", url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a process's output (`bytes`) says `expected`, showing it if not.
fn assert_says(bytes: &[u8], expected: impl AsRef<str>, why: &str) {
    let said = text(bytes);
    assert!(said.contains(expected.as_ref()), "{why}: {said}");
}

#[tokio::test]
async fn migrate_brings_a_new_sqlite_store_to_the_current_schema_and_a_start_then_has_nothing_to_do()
 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new").join("recordings.db");
    let url = format!("sqlite://{}", db.display());
    let current = migrations("sqlite");

    let first = migrate(&url);
    let again = migrate(&url);
    let started = start(&db.display().to_string());
    let while_serving = migrate(&url);
    let (_, log) = sigterm_and_wait(started);

    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_says(
        &first.stdout,
        format!("schema migrated from version 0 to {current}"),
        "the report of a first run",
    );
    assert_says(
        &first.stderr,
        format!("new sqlite store: created its schema (version {current})"),
        "a new store's schema is one line",
    );
    assert!(
        !text(&first.stderr).contains("applying sqlite migration"),
        "not one line per migration: {}",
        text(&first.stderr)
    );
    assert!(again.status.success());
    assert_says(
        &again.stdout,
        format!("schema up to date (version {current}), nothing applied"),
        "the report of a second run",
    );
    assert!(
        !log.contains("sqlite migration"),
        "nothing left to apply at start: {log}"
    );
    assert!(
        !while_serving.status.success(),
        "one process per SQLite file"
    );
    assert_says(
        &while_serving.stderr,
        "in use by another recording-events process",
        "the refusal names the reason",
    );
}

#[test]
fn an_upgrade_logs_each_migration_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let url = format!("sqlite://{}", db.display());
    let current = migrations("sqlite");
    // A store of the first version, as that version's first start made it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("../../../migrations/sqlite/0001_init.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);

    let upgraded = migrate(&url);

    assert!(upgraded.status.success(), "{}", text(&upgraded.stderr));
    assert_says(
        &upgraded.stdout,
        format!("schema migrated from version 1 to {current}"),
        "the report of the upgrade",
    );
    for n in 2..=current {
        assert_says(
            &upgraded.stderr,
            format!("applying sqlite migration {n} of {current}"),
            "each migration of an upgrade is logged before it starts",
        );
    }
    assert!(!text(&upgraded.stderr).contains("new sqlite store"));
}

#[test]
fn a_schema_newer_than_the_build_is_reported_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let url = format!("sqlite://{}", db.display());
    let current = migrations("sqlite");
    assert!(migrate(&url).status.success());
    // As a newer version would leave it, before a rollback to this one.
    let newer = current + 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", i64::try_from(newer).unwrap())
        .unwrap();

    let rolled_back = migrate(&url);

    assert!(
        rolled_back.status.success(),
        "{}",
        text(&rolled_back.stderr)
    );
    assert_says(
        &rolled_back.stdout,
        format!(
            "schema at version {newer}, newer than this build's {current}: a newer version migrated it; nothing applied"
        ),
        "the report names both versions",
    );
    assert_says(
        &rolled_back.stderr,
        "newer than this build's",
        "and warned of in the log",
    );
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::try_from(newer).unwrap(), "left as it is");
}

#[tokio::test]
async fn a_migration_waits_for_one_in_progress_says_so_and_then_applies_what_is_missing() {
    let url = schema_url(&fresh_schema().await);
    let current = migrations("postgres");
    // Another process migrating: it holds the migration lock until its transaction ends.
    let mut other = connect(&url).await;
    let holding = other.transaction().await.unwrap();
    holding
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .unwrap();

    let mut waiting = Command::new(env!("CARGO_BIN_EXE_recording-events"))
        .args(["migrate", "--database-url", &url])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, log) = mpsc::channel();
    let stderr = BufReader::new(waiting.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let said = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("the waiting migration says why it waits");
        if line.contains("migrating the PostgreSQL schema; waiting for it") {
            break line;
        }
    };
    let still_waiting = waiting.try_wait().unwrap().is_none();
    holding.commit().await.unwrap();
    let done = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert!(still_waiting, "{said}");
    assert!(done.status.success());
    let report = text(&done.stdout);
    assert!(
        report.contains(&format!("schema migrated from version 0 to {current}")),
        "{report}"
    );
    assert!(
        !report.contains("search_path"),
        "the URL's query is not shown: {report}"
    );
}
