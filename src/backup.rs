//! The `backup` subcommand: a consistent copy of the SQLite store, and what to keep with it.

use std::time::Instant;

use crate::config::BackupArgs;
use crate::store::sqlite::backup::backup;

/// Copies the store `args` names and returns the report for the operator.
///
/// # Errors
/// When the URL is not a SQLite store, or the copy fails (see [`backup`]).
pub fn run(args: &BackupArgs) -> anyhow::Result<String> {
    let url = args.database_url.expose();
    let Some(from) = crate::store::sqlite_path(url) else {
        anyhow::bail!(
            "--database-url: `backup` copies a SQLite store (sqlite://PATH); for PostgreSQL use pg_dump"
        );
    };
    crate::store::check_sqlite_file(from)?;
    let started = Instant::now();
    let copied = backup(from, &args.to)?;
    let (from, to) = (from.display(), args.to.display());
    Ok(format!(
        "backed up {from} to {to}: {} events (up to sequence {}), {} recordings, {:.1} MiB, in {:.2} s\n\
         Not in the copy: the API token file ({from}.token) and the token signing key \
         ({from}.signing-key), if the service generated them; they are secrets, keep them \
         apart from the data, and beside the copy's file when you restore from it.\n\
         To restore: stop the service, then start it with --database-url sqlite://{to}.\n",
        copied.events,
        copied.last_sequence,
        copied.recordings,
        copied.bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64(),
    ))
}
