//! The SQLite schema's migrations, applied at start, or alone by `recording-events
//! migrate` (which takes the store's lock, so not while a service runs on the file).

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

use crate::store::Migrated;

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_dedup_by_file.sql"),
    include_str!("../../../migrations/sqlite/0003_events_keep_the_body.sql"),
];

/// Applies the migrations newer than `PRAGMA user_version`, each in a transaction. Each
/// is logged before it starts: one that rewrites a large table takes a while.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let before = usize::try_from(version).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(before) {
        let (n, of) = (i + 1, MIGRATIONS.len());
        tracing::info!(migration = n, "applying sqlite migration {n} of {of}");
        let started = Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i64::try_from(n).unwrap_or(i64::MAX))?;
        tx.commit()?;
        tracing::info!(
            migration = n,
            seconds = started.elapsed().as_secs_f64(),
            "applied sqlite migration"
        );
    }
    Ok(Migrated::checked(before, MIGRATIONS.len()))
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
