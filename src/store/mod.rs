//! Storage: one [`Store`] trait; the URL scheme picks the backend.
//!
//! Every accepted callback is one event with a monotonically increasing sequence, the time
//! it was received, its typed fields and its raw body. The fold into recordings happens in
//! the same transaction, so an event and the recording it changed are stored together.

mod columns;
mod history;
pub mod postgres;
pub mod queue;
pub mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::broadcast;

use crate::domain::{Callback, Recording, RecordingState};
use crate::error::Error;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A callback to append, with the keys the writer needs derived up front by
/// [`NewEvent::new`] on the caller's thread: the writer is the one serial step, so the
/// hashing is done before the hand-off, in parallel.
#[derive(Debug, Clone)]
pub struct NewEvent {
    callback: Callback,
    raw_body: String,
    received_at: DateTime<Utc>,
    fingerprint: [u8; 32],
    /// For a callback that names no occurrence, its identity on the day before: a
    /// redelivery received then is a duplicate too.
    day_before: Option<[u8; 32]>,
    recording_id: Option<String>,
}

/// How long a callback that names no occurrence ([`Callback::names_no_occurrence`]) is
/// known by its body: its identity is the body's and the day (UTC) it was received, and a
/// duplicate is one of the same day or the day before — so a redelivery within a day is
/// always found, and the next recording's RECORD_START without `task_id`, two days later,
/// is a new event, not taken for a redelivery of the first.
const DAY_SECS: i64 = 86_400;

impl NewEvent {
    /// An event for `callback`, received as `raw_body` at `received_at` (kept to the
    /// microsecond, as stored, so live and replayed messages carry the same times).
    pub fn new(callback: Callback, raw_body: String, received_at: DateTime<Utc>) -> Self {
        let received_at = received_at.trunc_subsecs(6);
        let mut fingerprint = callback.fingerprint();
        let mut day_before = None;
        if callback.names_no_occurrence() {
            let day = received_at.timestamp().div_euclid(DAY_SECS);
            day_before = Some(on_day(&fingerprint, day - 1));
            fingerprint = on_day(&fingerprint, day);
        }
        NewEvent {
            fingerprint,
            day_before,
            recording_id: crate::domain::recording::id_for(&callback),
            callback,
            raw_body,
            received_at,
        }
    }
}

/// The identity of a callback that names no occurrence, received on `day` (since the
/// epoch, UTC).
fn on_day(fingerprint: &[u8; 32], day: i64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(fingerprint);
    h.update(day.to_le_bytes());
    h.finalize().into()
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The event's sequence (the original's, for a duplicate).
    pub sequence: i64,
    /// The callback had been stored before.
    pub duplicate: bool,
    /// The recording it belongs to, if it is about a file.
    pub recording_id: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub sequence: i64,
    pub callback: Callback,
    pub received_at: DateTime<Utc>,
    /// The recording right after this event (a snapshot), if the event is about a file.
    pub recording: Option<Recording>,
    /// For a RECORD_OVER: the files of its task it ended (still recording when it came),
    /// each right after it, by first sequence, at most [`MAX_ENDED`] (see [`Ended`]).
    /// Empty for every other event.
    pub ended: Ended,
}

/// The most files one WatchEvents message names as ended by a RECORD_OVER: ~250 bytes
/// each, so that the message stays far below the 4 MiB gRPC clients accept by default.
/// A message a follower cannot decode would stop it there at every resume.
pub const MAX_ENDED: usize = 1000;

/// The files a RECORD_OVER ended, the oldest [`MAX_ENDED`] of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ended {
    pub files: Vec<Recording>,
    /// More files than [`MAX_ENDED`] were ended: `files` are the oldest.
    pub truncated: bool,
}

impl Ended {
    /// The oldest [`MAX_ENDED`] of `files` (by first sequence).
    pub fn oldest(mut files: Vec<Recording>) -> Self {
        files.sort_unstable_by_key(|r| r.first_sequence);
        let truncated = files.len() > MAX_ENDED;
        files.truncate(MAX_ENDED);
        Ended { files, truncated }
    }
}

/// Filters of [`Store::list_recordings`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub project_id: Option<String>,
    pub publish_domain: Option<String>,
    pub app: Option<String>,
    pub stream: Option<String>,
    pub state: Option<RecordingState>,
    /// Overlap with [window_start, window_end).
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// Only recordings created before this sequence (the keyset cursor).
    pub before_sequence: Option<i64>,
    pub limit: usize,
}

/// [`Store::find_recordings`]: the recordings of `stream` whose span [start_time,
/// end_time) overlaps [start, end). An instant `t` is the window [t, t + 1µs).
#[derive(Debug, Clone, PartialEq)]
pub struct FindQuery {
    pub stream: String,
    pub app: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: usize,
}

/// Filters of [`Store::events_after`]; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub app: Option<String>,
    pub stream: Option<String>,
    pub event_type: Option<String>,
}

impl EventFilter {
    /// Whether an event passes the filter.
    pub fn matches(&self, cb: &Callback) -> bool {
        self.app.as_ref().is_none_or(|a| *a == cb.app)
            && self.stream.as_ref().is_none_or(|s| *s == cb.stream)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| t == cb.event_type.as_str())
    }
}

/// Where events and recordings live.
/// What one [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub recordings: u64,
}

/// Events removed per transaction by [`Store::prune`] (a few ms of the writer's time).
pub const PRUNE_CHUNK: i64 = 250;

/// After a removal transaction that began at `started`, waits twice as long as it took
/// (at least 5 ms): however large the backlog, removals take at most about a third of
/// the writer's time, and appends never wait behind more than one of them.
pub(crate) async fn pace_removals(started: std::time::Instant) {
    let pause = (started.elapsed() * 2).max(std::time::Duration::from_millis(5));
    tokio::time::sleep(pause).await;
}

#[tonic::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a callback durably (idempotently, by its fingerprint) and folds it into its
    /// recording. Returns only once the event is committed to disk.
    ///
    /// # Errors
    /// `ResourceExhausted` when the write queue is full; `Unavailable` when the store
    /// fails.
    async fn append(&self, event: NewEvent) -> Result<Appended, Error>;

    /// One recording by id.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn get_recording(&self, id: &str) -> Result<Option<Recording>, Error>;

    /// Recordings matching `query`, newest (highest first sequence) first.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn list_recordings(&self, query: ListQuery) -> Result<Vec<Recording>, Error>;

    /// Recordings of one stream overlapping a window, oldest first.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn find_recordings(&self, query: FindQuery) -> Result<Vec<Recording>, Error>;

    /// Up to `limit` events with a sequence greater than `after`, in sequence order.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn events_after(
        &self,
        after: i64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error>;

    /// New events, in sequence order, as they are committed.
    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>>;

    /// Retention: removes, oldest first, the events received before `before` (up to the
    /// first one received at or after it, in sequence order), the recordings none of
    /// whose events is left, and the task ends removed with them. In small transactions,
    /// so appends wait at most one of them.
    ///
    /// # Errors
    /// `Unavailable` when the store fails (what was removed before stays removed).
    async fn prune(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Pruned, Error>;

    /// The lowest sequence not removed by [`Store::prune`] (1 when nothing was).
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn first_kept(&self) -> Result<i64, Error>;

    /// The newest sequence this store has handed out (0 when none), removed or not: every
    /// sequence a client has seen is at most this.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    async fn last_sequence(&self) -> Result<i64, Error>;

    /// Whether the store can serve (for `/readyz`).
    ///
    /// # Errors
    /// `Unavailable` with the reason.
    async fn ping(&self) -> Result<(), Error>;

    /// Stops taking appends, lets those queued finish, and leaves the store tidy (SQLite:
    /// its WAL copied back into the database file). Called once, at shutdown, after the
    /// servers have stopped.
    async fn close(&self) {}
}

/// Opens the store a URL names: `sqlite://PATH` (or `sqlite:PATH`), or
/// `postgres://USER@HOST:PORT/DB` (several replicas may share one PostgreSQL database),
/// with at most `queue` callbacks waiting for the writer and, on PostgreSQL, at most
/// `pool` pooled connections.
///
/// # Errors
/// When the scheme is unknown or the database cannot be opened or migrated.
pub async fn open(url: &str, queue: usize, pool: usize) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = sqlite_path(url) {
        check_sqlite_file(path)?;
        let store = SqliteStore::open(path, queue).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::open(url, queue, pool).await?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("{}", unsupported(url))
}

/// The refusal of a URL that is neither SQLite nor PostgreSQL (showing its scheme only:
/// the rest may hold a password).
fn unsupported(url: &str) -> String {
    match url.split_once(':') {
        Some((scheme, _)) => format!(
            "--database-url: unsupported scheme `{scheme}`; expected sqlite://PATH or postgres://…"
        ),
        None => format!(
            "--database-url: `{url}` has no scheme; expected sqlite://PATH (e.g. \
             sqlite://{url}) or postgres://…"
        ),
    }
}

/// Refuses a SQLite URL that names no file, or an in-memory database, which would lose
/// every acknowledged callback when the process ends.
///
/// # Errors
/// Naming `--database-url` and what to give instead.
pub fn check_sqlite_file(path: &std::path::Path) -> anyhow::Result<()> {
    let name = path.to_string_lossy();
    anyhow::ensure!(
        !name.trim().is_empty(),
        "--database-url: names no file; expected sqlite://PATH, e.g. sqlite://recordings.db"
    );
    anyhow::ensure!(
        !name.contains(":memory:") && !name.contains("mode=memory"),
        "--database-url: an in-memory SQLite database would lose every acknowledged callback \
         when the process ends; give a file, e.g. sqlite://recordings.db"
    );
    Ok(())
}

/// A schema's version before and after a migration run (`after == before`: nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations the schema had.
    pub before: usize,
    /// The migrations it has now.
    pub after: usize,
    /// The migrations this build has: fewer than `after` when a newer version migrated
    /// the schema (a rollback).
    pub known: usize,
}

impl Migrated {
    /// The outcome of a run that found `before` and knows `known` migrations; warns of a
    /// schema newer than this build. It is not refused: whether a rollback can run on it
    /// depends on what the newer migrations changed, which only the operator knows.
    fn checked(before: usize, known: usize) -> Self {
        if before > known {
            tracing::warn!(
                "the schema is at version {before}, newer than this build's {known}: a newer \
                 version migrated it; running on it as it is"
            );
        }
        Migrated {
            before,
            after: before.max(known),
            known,
        }
    }
}

/// Logs a migration run's steps: each migration before it starts and once applied, as one
/// that rewrites or indexes a large table takes a while and a start that says nothing
/// meanwhile looks hung. A new store's schema is made in milliseconds: its steps are
/// logged at debug level, and one line says it was created.
pub(crate) struct MigrationLog {
    backend: &'static str,
    new_store: bool,
    known: usize,
}

impl MigrationLog {
    /// A run of `backend`'s `known` migrations on a schema that had `before`.
    pub(crate) fn new(backend: &'static str, before: usize, known: usize) -> Self {
        MigrationLog {
            backend,
            new_store: before == 0,
            known,
        }
    }

    /// Migration `n` starts.
    pub(crate) fn applying(&self, n: usize) {
        let (backend, of) = (self.backend, self.known);
        if self.new_store {
            tracing::debug!(migration = n, "applying {backend} migration {n} of {of}");
        } else {
            tracing::info!(migration = n, "applying {backend} migration {n} of {of}");
        }
    }

    /// Migration `n` is applied, `started` when it began.
    pub(crate) fn applied(&self, n: usize, started: std::time::Instant) {
        let (backend, seconds) = (self.backend, started.elapsed().as_secs_f64());
        if self.new_store {
            tracing::debug!(migration = n, seconds, "applied {backend} migration");
        } else {
            tracing::info!(migration = n, seconds, "applied {backend} migration");
        }
    }

    /// The run is over.
    pub(crate) fn done(&self) {
        if self.new_store && self.known > 0 {
            let (backend, version) = (self.backend, self.known);
            tracing::info!("new {backend} store: created its schema (version {version})");
        }
    }
}

/// Applies the migrations the store at `url` lacks, and nothing else: no writer, no
/// listener, no ports (`recording-events migrate`).
///
/// # Errors
/// As [`open`] for the URL; and for SQLite, when a service holds the file.
pub async fn migrate(url: &str) -> anyhow::Result<Migrated> {
    if let Some(path) = sqlite_path(url) {
        check_sqlite_file(path)?;
        let path = path.to_owned();
        return tokio::task::spawn_blocking(move || sqlite::migrate::migrate_file(&path)).await?;
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return postgres::migrate::migrate_url(url).await;
    }
    anyhow::bail!("{}", unsupported(url))
}

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names; `None` for other schemes.
pub fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(std::path::Path::new)
}
