//! The VFS changes how WAL frames reach the kernel, never what the database holds: every
//! scenario here writes through it and reads back through the default VFS.

use rusqlite::{Connection, OpenFlags, params};

fn open_coalesced(path: &std::path::Path) -> Connection {
    sqlite_wal_coalesce::register().expect("register");
    let conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), sqlite_wal_coalesce::NAME)
            .expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn
}

fn check(path: &std::path::Path, rows: i64, bytes: i64) {
    let plain = Connection::open(path).expect("open plain");
    let ok: String = plain
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    let (n, total): (i64, i64) = plain
        .query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!((n, total), (rows, bytes));
}

#[test]
fn small_and_large_commits_read_back_through_the_default_vfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let mut conn = open_coalesced(&path);
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB UNIQUE, body TEXT)")
        .expect("schema");
    let mut rows = 0i64;
    let mut bytes = 0i64;
    // Batches from one row to ~6 MiB of WAL (past the 1 MiB buffer).
    for batch in [1usize, 7, 64, 512, 3000] {
        let tx = conn.transaction().expect("tx");
        for i in 0..batch {
            let body = "x".repeat(900 + i % 300);
            tx.execute(
                "INSERT INTO t (k, body) VALUES (randomblob(16), ?1)",
                params![body],
            )
            .expect("insert");
            rows += 1;
            bytes += body.len() as i64;
        }
        tx.commit().expect("commit");
        // A second connection (default VFS) sees every committed row at once.
        check(&path, rows, bytes);
    }
    drop(conn);
    check(&path, rows, bytes);
}

#[test]
fn a_transaction_larger_than_the_page_cache_spills_and_rewrites_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let mut conn = open_coalesced(&path);
    // A tiny cache makes SQLite write frames mid-transaction, read them back and
    // overwrite them in place when the same page changes again.
    conn.pragma_update(None, "cache_size", 10).expect("cache");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB UNIQUE, body TEXT)")
        .expect("schema");
    let tx = conn.transaction().expect("tx");
    for i in 0..4000i64 {
        tx.execute(
            "INSERT INTO t (k, body) VALUES (randomblob(16), ?1)",
            params![format!("{i:0>1000}")],
        )
        .expect("insert");
    }
    tx.execute("UPDATE t SET body = body || 'y' WHERE id % 3 = 0", [])
        .expect("update");
    tx.commit().expect("commit");
    let updated = (1..=4000i64).filter(|id| id % 3 == 0).count() as i64;
    check(&path, 4000, 4000 * 1000 + updated);
}

#[test]
fn checkpoints_and_wal_restarts_keep_every_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let conn = open_coalesced(&path);
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no autocheckpoint");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB UNIQUE, body TEXT)")
        .expect("schema");
    let other = Connection::open(&path).expect("checkpointer");
    let mut rows = 0;
    for round in 0..20 {
        for _ in 0..50 {
            conn.execute(
                "INSERT INTO t (k, body) VALUES (randomblob(16), ?1)",
                params!["z".repeat(500)],
            )
            .expect("insert");
            rows += 1;
        }
        // Checkpoints from another connection, some restarting the WAL from the top (the
        // next commit then rewrites the header at offset 0).
        let mode = if round % 2 == 0 {
            "PASSIVE"
        } else {
            "TRUNCATE"
        };
        other
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            .expect("checkpoint");
        check(&path, rows, rows * 500);
    }
    drop(conn);
    check(&path, rows, rows * 500);
}
