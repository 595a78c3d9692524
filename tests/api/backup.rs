//! `backup`: a consistent copy of a running SQLite store, from which a service carries on.

use std::process::Command;

use recording_events::store::sqlite::backup::backup;

use crate::helpers::{authed, seed_request, spawn_app, spawn_app_in};

#[tokio::test]
async fn a_backup_taken_while_serving_restores_every_acknowledged_callback_and_its_identity() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;
    let first = client
        .vod_call_back(authed(seed_request()))
        .await
        .unwrap()
        .into_inner();
    for i in 0..20 {
        let mut other = seed_request();
        other.asset_id = format!("file-{i}");
        client.vod_call_back(authed(other)).await.unwrap();
    }

    let restore_dir = tempfile::tempdir().unwrap();
    let copy = restore_dir.path().join("events.db");
    let copied = backup(&app.db_path, &copy).unwrap();
    // Taken after the copy: the original has it, the copy must not.
    let mut later = seed_request();
    later.asset_id = "after-the-backup".into();
    let later_on_original = client
        .vod_call_back(authed(later.clone()))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(copied.events, 21);
    assert_eq!(copied.last_sequence, 21);
    assert_eq!(copied.recordings, 21);
    assert!(
        !copy.with_extension("db-wal").exists(),
        "the copy stands alone"
    );

    let restored = spawn_app_in(restore_dir).await;
    // A consumer that saw the original's newest event is told that the copy lacks it,
    // rather than left waiting to skip the copy's own next events up to that sequence.
    let refused = restored.watch_refused(later_on_original.event_id).await;
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    let mut client = restored.grpc().await;
    let again = client
        .vod_call_back(authed(seed_request()))
        .await
        .unwrap()
        .into_inner();
    let later_on_copy = client
        .vod_call_back(authed(later))
        .await
        .unwrap()
        .into_inner();
    let listed = restored.all_recordings().await;

    assert_eq!((again.duplicate, again.event_id), (true, first.event_id));
    assert_eq!(again.recording_id, first.recording_id);
    assert!(
        !later_on_copy.duplicate,
        "the later callback is not in the copy"
    );
    assert_eq!(later_on_copy.event_id, later_on_original.event_id);
    assert_eq!(listed.len(), 22);
}

#[tokio::test]
async fn a_backup_never_overwrites_and_refuses_what_is_not_a_store() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, b"keep me").unwrap();
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty).unwrap();

    let over = backup(&app.db_path, &existing).unwrap_err().to_string();
    let missing = backup(&dir.path().join("missing.db"), &dir.path().join("a.db"))
        .unwrap_err()
        .to_string();
    let not_ours = backup(&empty, &dir.path().join("b.db"))
        .unwrap_err()
        .to_string();

    assert!(over.contains("already exists"), "{over}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert!(missing.contains("no such database file"), "{missing}");
    assert!(
        not_ours.contains("not a recording-events database"),
        "{not_ours}"
    );
    assert!(!dir.path().join("a.db").exists() && !dir.path().join("b.db").exists());
}

#[tokio::test]
async fn the_backup_command_reports_what_it_copied_and_what_to_keep_with_it() {
    let app = spawn_app().await;
    app.post_ok(crate::helpers::payload("seed_example.json"))
        .await;
    let db = app.db_path.clone();
    let copy = app.dir.path().join("copy.db");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_recording-events"))
            .arg("backup")
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };

    let url = format!("--database-url=sqlite://{}", db.display());
    let to = copy.display().to_string();
    // While the service runs on the store; the command blocks, so off the runtime.
    let (ok, again, postgres) = tokio::task::spawn_blocking(move || {
        (
            run(&[&url, &to]),
            run(&[&url, &to]),
            run(&["--database-url=postgres://u:pw@127.0.0.1/x", "out.db"]),
        )
    })
    .await
    .unwrap();

    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("1 events (up to sequence 1), 1 recordings"),
        "{stdout}"
    );
    assert!(
        stdout.contains(".token") && stdout.contains(".signing-key"),
        "{stdout}"
    );
    assert!(stdout.contains("--database-url sqlite://"), "{stdout}");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(!postgres.status.success());
    let refused = String::from_utf8_lossy(&postgres.stderr);
    assert!(
        refused.contains("pg_dump") && !refused.contains("pw@"),
        "{refused}"
    );
}
