//! The read-only connections queries run on (from `spawn_blocking`), and their settings.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

/// How many idle read connections are kept.
const IDLE_READERS: usize = 8;

/// The pool of read-only connections: one per concurrent read, at most
/// [`IDLE_READERS`] kept idle.
pub(super) struct Readers {
    pub(super) path: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs `f` on an idle connection, or on a new one when none is idle.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        // A std Mutex: it is held only to pop or push a connection, never across a query.
        let conn = self.idle.lock().expect("reader pool poisoned").pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().expect("reader pool poisoned");
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure_reader(&conn)?;
    Ok(conn)
}

/// The settings of a reading connection.
pub(super) fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Read the database file through a memory map instead of a pread per page: a
    // FindRecordings lookup on a million recordings drops from ~100 µs to ~15 µs. Address
    // space only; pages count as (shared, reclaimable) memory once touched.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    // One plan per statement, whatever values are bound (the query planner stability
    // guarantee): otherwise SQLite prepares a cached statement again, parse and plan,
    // whenever a bound value might change its plan, which it decides for the queries that
    // use the partial index of open files: FindRecordings spent ~35 of its ~45 µs on the
    // store (a million recordings) preparing itself again, at every call. The queries are
    // written for one plan each (index ranges; see the plan test of the store, `mod.rs`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}
