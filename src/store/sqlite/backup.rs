//! A consistent copy of a SQLite store, taken while the service runs on it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub events: i64,
    /// The newest event's sequence: every callback acknowledged up to it is in the copy.
    pub last_sequence: i64,
    pub recordings: i64,
    pub bytes: u64,
}

/// Copies the store at `from` into the new file `to` with `VACUUM INTO`: one read
/// transaction, so the copy is the store as of one commit, and the service keeps
/// taking callbacks meanwhile (a reader never blocks the WAL's writer). The copy is
/// compact and self-contained (no `-wal` file) and passes `PRAGMA quick_check`; a service
/// started on it carries on where the copy ends (same sequences, same idempotency).
///
/// # Errors
/// When `from` is not a store of this service, `to` exists, or the copy fails (then
/// nothing is left at `to`).
pub fn backup(from: &Path, to: &Path) -> anyhow::Result<Copied> {
    anyhow::ensure!(from.is_file(), "{}: no such database file", from.display());
    anyhow::ensure!(
        !to.exists(),
        "{}: already exists; back up to a new file",
        to.display()
    );
    let target = to
        .to_str()
        .with_context(|| format!("{}: the path is not UTF-8", to.display()))?;
    // Read-write without create: a read-only connection cannot open a WAL database
    // whose shared-memory file is missing (the service not running). Nothing is written.
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("{}: cannot open", from.display()))?;
    source.busy_timeout(Duration::from_secs(30))?;
    let version: i64 = source.pragma_query_value(None, "user_version", |r| r.get(0))?;
    anyhow::ensure!(
        version > 0,
        "{}: not a recording-events database (no schema)",
        from.display()
    );
    let copied = source
        .execute("VACUUM INTO ?1", [target])
        .map_err(anyhow::Error::from)
        .and_then(|_| check(to));
    if copied.is_err() && to.exists() {
        let _ = std::fs::remove_file(to);
    }
    copied.with_context(|| format!("copying {} into {}", from.display(), to.display()))
}

fn check(copy: &Path) -> anyhow::Result<Copied> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    anyhow::ensure!(verdict == "ok", "the copy fails its check: {verdict}");
    let (events, last_sequence) = conn.query_row(
        "SELECT count(*), coalesce(max(sequence), 0) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let recordings = conn.query_row("SELECT count(*) FROM recordings", [], |r| r.get(0))?;
    Ok(Copied {
        events,
        last_sequence,
        recordings,
        bytes: std::fs::metadata(copy)?.len(),
    })
}
