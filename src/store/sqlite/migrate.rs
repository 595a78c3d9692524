//! The SQLite schema's migrations, applied at start, or alone by `recording-events
//! migrate` (which takes the store's lock, so not while a service runs on the file).

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

use crate::store::{Migrated, MigrationLog};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_dedup_by_file.sql"),
    include_str!("../../../migrations/sqlite/0003_events_keep_the_body.sql"),
    include_str!("../../../migrations/sqlite/0004_spans_by_stream.sql"),
    include_str!("../../../migrations/sqlite/0005_rare_states.sql"),
];

/// Applies the migrations newer than `PRAGMA user_version`, each in a transaction, logged
/// as [`MigrationLog`] says.
///
/// # Errors
/// When the file is another program's database (see [`ours`]), or SQLite fails.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<Migrated> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    ours(conn, version)?;
    let before = usize::try_from(version).unwrap_or(0);
    let log = MigrationLog::new("sqlite", before, MIGRATIONS.len());
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(before) {
        let n = i + 1;
        log.applying(n);
        let started = Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i64::try_from(n).unwrap_or(i64::MAX))?;
        tx.commit()?;
        log.applied(n, started);
    }
    log.done();
    Ok(Migrated::checked(before, MIGRATIONS.len()))
}

/// Refuses another program's database, before anything is written to it: one with tables
/// but no schema version (a file given by mistake would otherwise get this service's
/// tables added beside its own), or one whose version another program set (this
/// service's first migration makes `meta`).
fn ours(conn: &Connection, version: i64) -> anyhow::Result<()> {
    let mut tables = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' \
         ESCAPE '\\' ORDER BY name",
    )?;
    let tables = tables
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if version == 0 && !tables.is_empty() {
        anyhow::bail!(
            "not a recording-events database: it holds other tables ({}) and no \
             recording-events schema; give a new file, or one this service made",
            tables.join(", ")
        );
    }
    if version > 0 && !tables.iter().any(|t| t == "meta") {
        anyhow::bail!(
            "not a recording-events database: its schema version ({version}) was set by \
             another program (no `meta` table); give a new file, or one this service made"
        );
    }
    Ok(())
}

/// Opens (creating if missing) the database at `path` and migrates it, then closes it.
///
/// # Errors
/// When a service holds the file, or it cannot be opened or migrated.
pub fn migrate_file(path: &Path) -> anyhow::Result<Migrated> {
    let (conn, _lock, migrated) = super::open_locked(path)?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(migrated)
}
