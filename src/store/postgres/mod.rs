//! The PostgreSQL store, for several replicas sharing one database.
//!
//! - Writes: one batching writer task per replica (`writer`); replicas serialize their
//!   transactions with an advisory lock, so sequences are gap-free and commit in order.
//! - Live events: every commit NOTIFYs a channel; each replica's listener (`listener`)
//!   then reads the new events from the table, in sequence order, and hands them to its
//!   local watchers. So a watcher on any replica sees every replica's events. Events
//!   read back carry their recording as it was right after them (module `events`).
//! - Reads: a connection pool, each read bounded in time and cancelled in the database when
//!   its caller leaves (module `deadline`).
//! - Durability: every session waits for the disk; a server that does not sync is warned
//!   about at start (module `durability`).

mod deadline;
mod durability;
mod events;
mod listener;
mod lock;
pub mod migrate;
mod prune;
mod rows;
mod writer;

pub use durability::durable_commits;
pub use lock::TAKE_APPEND_LOCK;

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type};

use self::deadline::READ_WITHIN;
use self::events::read_events;
use self::rows::RECORDING_COLUMNS;
use crate::domain::Recording;
use crate::domain::time::to_micros;
use crate::error::Error;
use crate::store::columns::{
    Arg, LIST_SIZES_SQL, ListSizes, find_recordings_sql, list_may_split, list_parts,
    list_recordings_sql,
};
use crate::store::queue;
use crate::store::{
    Appended, EventFilter, FindQuery, ListQuery, NewEvent, Pruned, Store, StoredEvent,
};

/// How many committed events a watcher may lag behind before it reads from the store.
const NOTIFY_CAPACITY: usize = 4096;
/// A new connection (TCP, TLS, start-up, authentication) must be ready within this.
const CREATE_WITHIN: Duration = Duration::from_secs(10);

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    queue: mpsc::Sender<queue::Job>,
    notify: broadcast::Sender<Arc<StoredEvent>>,
    listener: JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects, migrates, and starts the writer and the listener; `pool` connections at
    /// most for the writer and the reads (the listener has one of its own).
    ///
    /// # Errors
    /// When the URL is invalid or the database cannot be reached or migrated.
    pub async fn open(url: &str, queue: usize, pool: usize) -> anyhow::Result<Self> {
        let config = config(url)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A new connection's whole set-up is bounded, not only its TCP connect: a host
        // that accepts and then says nothing would otherwise hold `get` for ever.
        let pool = Pool::builder(manager)
            .max_size(pool.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(CREATE_WITHIN))
            // Every connection busy for this long means a database not answering: the
            // request is refused (to be retried) rather than queued for ever.
            .wait_timeout(Some(READ_WITHIN))
            // Bounded like the rest of a connection's set-up (the pool's create timeout
            // does not cover its hooks).
            .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    match tokio::time::timeout(CREATE_WITHIN, durable_commits(client)).await {
                        Ok(done) => done
                            .map(drop)
                            .map_err(deadpool_postgres::HookError::Backend),
                        Err(_) => Err(deadpool_postgres::HookError::Message(
                            "PostgreSQL did not answer a new connection's first query in time"
                                .into(),
                        )),
                    }
                })
            }))
            .build()?;
        report_pool(&pool);
        // The driver's own error, not the pool's wrapping of it ("Error occurred while
        // creating a new object: …"), which repeats it.
        let mut client = pool
            .get()
            .await
            .map_err(|e| match e {
                deadpool_postgres::PoolError::Backend(e) => anyhow::Error::new(e),
                other => anyhow::Error::new(other),
            })
            .context("cannot connect to PostgreSQL")?;
        let version: String = client
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await?
            .get(0);
        if let Some(refusal) = too_old(&version) {
            anyhow::bail!("{refusal}");
        }
        migrate::migrate(&mut client).await?;
        durability::warn_if_the_server_is_not_crash_safe(&client).await?;
        let last: i64 = client
            .query_one("SELECT coalesce(max(sequence), 0) FROM events", &[])
            .await?
            .get(0);
        drop(client);

        let (tx, rx) = mpsc::channel(queue.max(1));
        queue::report_depth(&tx);
        tokio::spawn(writer::run(pool.clone(), rx));
        let (notify, _) = broadcast::channel(NOTIFY_CAPACITY);
        let listener = tokio::spawn(listener::listen(config, pool.clone(), notify.clone(), last));
        Ok(PostgresStore {
            pool,
            queue: tx,
            notify,
            listener,
        })
    }
}

/// The pool's connections in /metrics, read at each scrape while the pool lives.
fn report_pool(pool: &Pool) {
    let pool = pool.weak();
    crate::metrics::on_scrape(move || {
        let Some(pool) = pool.upgrade() else {
            return false;
        };
        let status = pool.status();
        let in_use = status.size.saturating_sub(status.available);
        metrics::gauge!("recording_events_store_pool_connections", "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!("recording_events_store_pool_connections", "state" => "idle")
            .set(status.available as f64);
        metrics::gauge!("recording_events_store_pool_waiting").set(status.waiting as f64);
        metrics::gauge!("recording_events_store_pool_max_connections").set(status.max_size as f64);
        true
    });
}

/// Runs a read on a pooled connection, within [`READ_WITHIN`] ([`deadline`]).
async fn read<T>(
    pool: &Pool,
    work: impl AsyncFnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let client = pool.get().await.map_err(Error::store)?;
    deadline::within(client, READ_WITHIN, work)
        .await
        .map_err(Error::store)?
}

/// The connection settings of `url`, with [`connection_defaults`] for what it leaves out.
///
/// # Errors
/// When `url` is not a PostgreSQL URL; the error never repeats the URL (it may hold a
/// password).
fn config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config =
        tokio_postgres::Config::from_str(url).context("not a valid postgres:// URL")?;
    connection_defaults(&mut config, url);
    Ok(config)
}

/// What the URL does not set. The application name shows the service's sessions as such
/// in `pg_stat_activity` and the server's logs.
///
/// Without the network ones a database host that drops packets (a failover, a network partition)
/// holds the writer and its callbacks for the kernel's TCP retransmission timeout, ~15
/// minutes: a connection now gives up after 10 s, and data left unacknowledged for 30 s
/// (TCP_USER_TIMEOUT; on an idle connection, keep-alive probes after 30 s) fails it, so its
/// callbacks are answered UNAVAILABLE and retried. The URL's own settings win.
fn connection_defaults(config: &mut tokio_postgres::Config, url: &str) {
    if config.get_application_name().is_none() {
        config.application_name(env!("CARGO_PKG_NAME"));
    }
    if config.get_connect_timeout().is_none() {
        // The TCP part of a connection's set-up (the listener connects outside the pool).
        config.connect_timeout(CREATE_WITHIN);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    if !url.contains("keepalives_idle=") {
        config.keepalives_idle(Duration::from_secs(30));
    }
}

/// A generated query's values bind as what they hold, checked against the parameter's
/// type as each would be.
impl ToSql for Arg {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::BigInt(n) => n.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty)
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Arg::Text(s) => s.to_sql_checked(ty, out),
            Arg::BigInt(n) => n.to_sql_checked(ty, out),
        }
    }
}

#[tonic::async_trait]
impl Store for PostgresStore {
    async fn append(&self, event: NewEvent) -> Result<Appended, Error> {
        queue::submit(&self.queue, event).await
    }

    async fn get_recording(&self, id: &str) -> Result<Option<Recording>, Error> {
        let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1");
        read(&self.pool, async |client| {
            let stmt = client.prepare_cached(&sql).await.map_err(Error::store)?;
            let row = client
                .query_opt(&stmt, &[&id])
                .await
                .map_err(Error::store)?;
            Ok(row.as_ref().map(rows::recording))
        })
        .await
    }

    async fn list_recordings(&self, q: ListQuery) -> Result<Vec<Recording>, Error> {
        read(&self.pool, async |client| {
            // The parts split the recordings at one sequence, so no recording is in two
            // (one created meanwhile is after it).
            let sizes = if list_may_split(&q) {
                let stmt = client
                    .prepare_cached(LIST_SIZES_SQL)
                    .await
                    .map_err(Error::store)?;
                let row = client.query_one(&stmt, &[]).await.map_err(Error::store)?;
                ListSizes {
                    newest: row.get(0),
                    streams: row.get(1),
                    newest_created: row.get(2),
                }
            } else {
                ListSizes::default()
            };
            let mut found = Vec::new();
            for part in list_parts(&q, sizes) {
                if found.len() >= q.limit {
                    break;
                }
                let (sql, args) = list_recordings_sql(&q, part, |n| format!("${n}"));
                let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
                let stmt = client.prepare_cached(&sql).await.map_err(Error::store)?;
                let rows = client.query(&stmt, &params).await.map_err(Error::store)?;
                found.extend(rows.iter().map(rows::recording));
            }
            found.truncate(q.limit);
            Ok(found)
        })
        .await
    }

    async fn find_recordings(&self, q: FindQuery) -> Result<Vec<Recording>, Error> {
        static FIND: LazyLock<String> = LazyLock::new(|| find_recordings_sql(|n| format!("${n}")));
        let (start, end) = (to_micros(q.start), to_micros(q.end));
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        read(&self.pool, async |client| {
            let stmt = client.prepare_cached(&FIND).await.map_err(Error::store)?;
            let rows = client
                .query(&stmt, &[&q.stream, &start, &end, &q.app, &limit])
                .await
                .map_err(Error::store)?;
            Ok(rows.iter().map(rows::recording).collect())
        })
        .await
    }

    async fn events_after(
        &self,
        after: i64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        read_events(&self.pool, after, &filter, limit).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.notify.subscribe()
    }

    async fn prune(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Pruned, Error> {
        prune::prune(&self.pool, to_micros(before)).await
    }

    async fn first_kept(&self) -> Result<i64, Error> {
        read(&self.pool, async |client| prune::first_kept(client).await).await
    }

    async fn last_sequence(&self) -> Result<i64, Error> {
        read(&self.pool, async |client| {
            let row = client
                .query_one(writer::LAST_SEQUENCE, &[])
                .await
                .map_err(Error::store)?;
            Ok(row.get(0))
        })
        .await
    }

    async fn ping(&self) -> Result<(), Error> {
        if self.queue.is_closed() {
            return Err(Error::store(std::io::Error::other(
                "the store writer has stopped",
            )));
        }
        read(&self.pool, async |client| {
            client
                .query_one("SELECT 1", &[])
                .await
                .map_err(Error::store)?;
            Ok(())
        })
        .await
    }
}

/// The oldest server this store runs on: the writer's transactions set
/// `plan_cache_mode` (PostgreSQL 12).
const OLDEST_SERVER: i64 = 120_000;

/// Why a server of `server_version_num` is refused, if it is: refused at start, rather
/// than every batch failing on a setting the server does not know.
fn too_old(server_version_num: &str) -> Option<String> {
    let num: i64 = server_version_num.trim().parse().ok()?;
    // 110022 is 11.22; before 10, 90624 was 9.6.24.
    let version = match num {
        100_000.. => format!("{}", num / 10_000),
        _ => format!("{}.{}", num / 10_000, num % 10_000 / 100),
    };
    (num < OLDEST_SERVER).then(|| {
        format!("PostgreSQL {version} is too old: recording-events needs PostgreSQL 12 or later")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_older_than_12_is_refused_by_its_version() {
        assert_eq!(
            too_old("110022").as_deref(),
            Some("PostgreSQL 11 is too old: recording-events needs PostgreSQL 12 or later")
        );
        assert_eq!(
            too_old("90624").as_deref(),
            Some("PostgreSQL 9.6 is too old: recording-events needs PostgreSQL 12 or later")
        );
        assert_eq!(too_old("120000"), None);
        assert_eq!(too_old("150019"), None);
    }

    use super::*;

    fn configured(url: &str) -> tokio_postgres::Config {
        config(url).unwrap()
    }

    #[test]
    fn a_dead_database_host_is_given_up_on_in_seconds_and_sessions_are_named_unless_the_url_says_otherwise()
     {
        let defaults = configured("postgres://u@db/x");
        assert_eq!(
            defaults.get_connect_timeout(),
            Some(&Duration::from_secs(10))
        );
        assert_eq!(
            defaults.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        assert_eq!(defaults.get_keepalives_idle(), Duration::from_secs(30));
        assert!(defaults.get_keepalives());
        assert_eq!(defaults.get_application_name(), Some("recording-events"));

        let own = configured(
            "postgres://u@db/x?connect_timeout=3&tcp_user_timeout=5&keepalives_idle=60&application_name=ingest-eu",
        );
        assert_eq!(own.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(own.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(own.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(own.get_application_name(), Some("ingest-eu"));
    }
}
