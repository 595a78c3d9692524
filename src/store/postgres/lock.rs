//! The append lock: what keeps event sequences gap-free and in commit order when several
//! replicas write to one schema, and what keeps a replica that fails while holding it from
//! holding up the others for long.

use std::sync::LazyLock;
use std::time::Duration;

use super::deadline::{TimedOut, within};

/// The advisory lock that serialized appends across the whole database before they were
/// serialized per schema. Still taken, shared, so a replica of an earlier version (which
/// takes it exclusively) and this one exclude each other during a rolling upgrade.
const APPEND_LOCK: i64 = 0x7265_635f_6576_7473;
/// How long the server lets a writer's transaction sit idle before it ends the session.
/// The writer never waits on anything but the database inside a transaction, so an idle
/// one is a replica that died or was cut off while holding the append lock: without this
/// every other replica's writes would wait for the server to notice the lost connection
/// (hours of TCP keep-alive by default).
const IDLE_IN_TRANSACTION: &str = "10s";
/// The most one batch's transaction may take, waiting for the lock included. A host that
/// still acknowledges packets but never answers would otherwise hold the writer for ever.
const COMMIT_WITHIN: Duration = Duration::from_secs(30);
/// The high half of a schema's own append lock; the low half is the `oid` of the `events`
/// table the transaction writes to: the table the queries resolve, whatever the
/// `search_path` that led there.
const TABLE_LOCK_TAG: i64 = 0x7265_6373_0000_0000;

/// Opens an append transaction's critical section, in one round trip: bounds the time the
/// transaction may sit idle, then takes the append lock of this store's `events` table (so
/// deployments in other schemas of the same database do not wait for each other), after
/// the old database-wide one, shared. Run inside a transaction; a tool that must hold
/// writes back (as the tests do) takes the lock the same way.
pub static TAKE_APPEND_LOCK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SET LOCAL idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'; \
         SELECT pg_advisory_xact_lock_shared({APPEND_LOCK}); \
         SELECT pg_advisory_xact_lock({TABLE_LOCK_TAG} | 'events'::regclass::oid::bigint)"
    )
});

/// Why [`under_lock`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Bounded {
    /// The database answered with an error, or the connection failed.
    #[error(transparent)]
    Failed(#[from] tokio_postgres::Error),
    /// No answer within [`COMMIT_WITHIN`]: the statement was cancelled and the connection
    /// closed.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
}

/// Runs `work`, a transaction that takes the append lock, on `client` within
/// [`COMMIT_WITHIN`]. Past it, the connection may still hold the transaction and the lock:
/// it is closed, never pooled again, so the server ends both as soon as it hears of it.
pub async fn under_lock<T>(
    client: deadpool_postgres::Object,
    work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
) -> Result<T, Bounded> {
    Ok(within(client, COMMIT_WITHIN, work).await??)
}
