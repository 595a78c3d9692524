//! The embedded SQLite store (the default): one writer thread doing group commit
//! (`writer`) and, between batches, retention's removals (`prune`), a thread copying the
//! WAL back into the database file (`checkpoint`), and a small pool of read-only
//! connections for queries, used from `spawn_blocking` so no SQLite call runs on the
//! async runtime.

pub mod backup;
mod checkpoint;
pub mod migrate;
mod prune;
mod readers;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as mpsc_std;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::readers::Readers;
use self::rows::RECORDING_COLUMNS;
use crate::domain::Recording;
use crate::domain::time::to_micros;
use crate::error::Error;
use crate::store::columns::{
    Arg, LIST_SIZES_SQL, ListSizes, find_recordings_sql, list_may_split, list_parts,
    list_recordings_sql,
};
use crate::store::{
    Appended, EventFilter, FindQuery, ListQuery, Migrated, NewEvent, PRUNE_CHUNK, Pruned, Store,
    StoredEvent, pace_removals,
};
use crate::store::{history, queue};

/// How many committed events a watcher may lag behind before it reads from the store.
const NOTIFY_CAPACITY: usize = 4096;

/// The SQLite store.
pub struct SqliteStore {
    /// `None` once closed: the writer then finishes what is queued and stops.
    queue: RwLock<Option<mpsc::Sender<writer::Work>>>,
    /// The writer and checkpoint threads, joined by `close`.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
    notify: broadcast::Sender<Arc<StoredEvent>>,
    /// `<database>.lock`, locked while this store is open (see [`lock`]); released by
    /// `close` once the writer has stopped.
    lock: Mutex<Option<std::fs::File>>,
}

/// Takes `<database>.lock` (created if missing), so that one process at a time serves a
/// SQLite store: the writer hands out sequences from memory, and a second process on the
/// same file would start, look healthy, then fail every callback. The lock is the
/// kernel's (`flock`): a process that dies, however, releases it. The file holds the pid
/// of the process that has it, for the message.
///
/// # Errors
/// When another process holds it (the message names it), or it cannot be created.
fn lock(database: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            anyhow::bail!(
                "{} is in use by another recording-events process{holder}, which holds {}; \
                 run one process per SQLite file (several replicas need PostgreSQL)",
                database.display(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// The writing connection, not yet migrated ([`open_locked`] migrates it).
fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    // Through the WAL-coalescing VFS: a commit's WAL frames reach the kernel in one
    // `pwrite` (per 128 KiB) instead of two per frame; the bytes, their order and the
    // sync are unchanged (see the `sqlite-wal-coalesce` crate). It relies on
    // `synchronous=FULL`, set below: a commit is synced before others can see it.
    sqlite_wal_coalesce::register().map_err(|rc| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot register the WAL-coalescing VFS".into()),
        )
    })?;
    let conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), sqlite_wal_coalesce::NAME)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL + synchronous=FULL: a commit returns only after the WAL is fsynced.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The WAL-coalescing VFS hands a commit's frames on at its sync: with a commit that
    // does not sync (NORMAL), readers could look for frames still in its buffer.
    debug_assert_eq!(
        conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))?,
        2,
        "the writer must commit with synchronous=FULL"
    );
    // A small page cache: SQLite walks its whole hash table at the end of every
    // transaction, which at 32 MiB cost more than the misses it saved (the OS page cache
    // serves those). A big batch may still grow past it: no spilling mid-transaction.
    conn.pragma_update(None, "cache_size", -4_096)?;
    conn.pragma_update(None, "cache_spill", false)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread (see `checkpoint`), not inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 384 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Creates the file's directory if missing, takes the store's [`lock`], and opens the
/// writing connection, migrated: what a start and `recording-events migrate` both do.
fn open_locked(path: &Path) -> anyhow::Result<(Connection, std::fs::File, Migrated)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let opened = (|| {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        let lock = lock(path)?;
        let mut conn = open_writer(path)?;
        let migrated = migrate::migrate(&mut conn)?;
        anyhow::Ok((conn, lock, migrated))
    })();
    opened.map_err(|e| name_a_full_disk(e, dir, LOW_SPACE))
}

/// Free bytes below which a store that cannot be opened is said to be on a full disk.
const LOW_SPACE: u64 = 1024 * 1024;

/// Adds to a failure to open the store that the disk holding `dir` is full, when fewer
/// than `low` bytes are free on it: SQLite then says only "disk I/O error" (it could not
/// grow its shared-memory file), which sends an operator looking for a broken disk.
fn name_a_full_disk(e: anyhow::Error, dir: &Path, low: u64) -> anyhow::Error {
    match rustix::fs::statvfs(dir) {
        Ok(fs) if fs.f_bavail.saturating_mul(fs.f_frsize) < low => {
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            e.context(format!(
                "the disk holding {} is full ({free} bytes free)",
                dir.display()
            ))
        }
        _ => e,
    }
}

/// How long `close` waits for the writer to finish the queue and the checkpointer to copy
/// the WAL back. Past it the process may stop anyway: the WAL is replayed at the next start.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `path`, and starts the
    /// writer with room for `queue` waiting callbacks.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path, queue: usize) -> anyhow::Result<Self> {
        let path = path.to_owned();
        let (conn, path, lock) = tokio::task::spawn_blocking(move || {
            let (conn, lock, _) = open_locked(&path)?;
            anyhow::Ok((conn, path, lock))
        })
        .await??;
        let (tx, rx) = mpsc::channel(queue.max(1));
        queue::report_depth(&tx);
        let (notify, _) = broadcast::channel(NOTIFY_CAPACITY);
        let writer_notify = notify.clone();
        let checkpointer = checkpoint::open(&path)?;
        let db_file = std::fs::OpenOptions::new().write(true).open(&path)?;
        let (alive, writer_gone) = mpsc_std::channel::<()>();
        let rewind = Arc::new(AtomicBool::new(false));
        let writer_rewind = rewind.clone();
        let checkpoint_thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint::run(checkpointer, db_file, writer_gone, rewind))?;
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                if let Err(e) = writer::run(conn, rx, writer_notify, &writer_rewind) {
                    tracing::error!(error = %e, "store writer failed to start");
                }
                drop(alive);
            })?;
        Ok(SqliteStore {
            queue: RwLock::new(Some(tx)),
            threads: Mutex::new(vec![writer_thread, checkpoint_thread]),
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            notify,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The writer's queue, unless the store is closed.
    fn writer(&self) -> Option<mpsc::Sender<writer::Work>> {
        self.queue.read().expect("queue lock poisoned").clone()
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(Error::internal)?
            .map_err(Error::store)
    }
}

/// A generated query's values bind as what they hold.
impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::BigInt(n) => n.to_sql(),
        }
    }
}

#[tonic::async_trait]
impl Store for SqliteStore {
    async fn append(&self, event: NewEvent) -> Result<Appended, Error> {
        match self.writer() {
            Some(queue) => queue::submit_as(&queue, event, writer::Work::Append).await,
            None => Err(queue::stopped()),
        }
    }

    async fn get_recording(&self, id: &str) -> Result<Option<Recording>, Error> {
        let id = id.to_owned();
        self.read(move |c| rows::load_recording(c, &id)).await
    }

    async fn list_recordings(&self, q: ListQuery) -> Result<Vec<Recording>, Error> {
        self.read(move |c| {
            // The parts split the recordings at one sequence, so no recording is in two
            // (one created meanwhile is after it).
            let sizes = if list_may_split(&q) {
                c.prepare_cached(LIST_SIZES_SQL)?.query_row([], |row| {
                    Ok(ListSizes {
                        newest: row.get(0)?,
                        streams: row.get(1)?,
                        newest_created: row.get(2)?,
                    })
                })?
            } else {
                ListSizes::default()
            };
            let mut found = Vec::new();
            for part in list_parts(&q, sizes) {
                if found.len() >= q.limit {
                    break;
                }
                let (sql, args) = list_recordings_sql(&q, part, |n| format!("?{n}"));
                let mut stmt = c.prepare_cached(&sql)?;
                let params = rusqlite::params_from_iter(&args);
                for recording in stmt.query_map(params, rows::recording)? {
                    found.push(recording?);
                }
            }
            found.truncate(q.limit);
            Ok(found)
        })
        .await
    }

    async fn find_recordings(&self, q: FindQuery) -> Result<Vec<Recording>, Error> {
        self.read(move |c| {
            static FIND: LazyLock<String> =
                LazyLock::new(|| find_recordings_sql(|n| format!("?{n}")));
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let params =
                rusqlite::params![q.stream, to_micros(q.start), to_micros(q.end), q.app, limit];
            c.prepare_cached(&FIND)?
                .query_map(params, rows::recording)?
                .collect()
        })
        .await
    }

    async fn events_after(
        &self,
        after: i64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {}, {} FROM events e LEFT JOIN recordings r ON r.id = e.recording_id \
                 WHERE e.sequence > ?1 AND (?2 IS NULL OR e.app = ?2) \
                 AND (?3 IS NULL OR e.stream = ?3) AND (?4 IS NULL OR e.event_type = ?4) \
                 ORDER BY e.sequence LIMIT ?5",
                rows::EVENT_COLUMNS,
                rows::prefixed(RECORDING_COLUMNS, "r"),
            );
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut page = c
                .prepare_cached(&sql)?
                .query_map(
                    rusqlite::params![after, filter.app, filter.stream, filter.event_type, limit],
                    rows::event,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut wanted = history::wanted(&page);
            rows::task_files(c, &history::task_ends(&page), &mut wanted)?;
            let past = rows::past(c, &wanted, &page)?;
            let overs = rows::overs(c, &history::tasks(&past))?;
            history::attach(&mut page, &past, &overs);
            Ok(page)
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.notify.subscribe()
    }

    async fn prune(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Pruned, Error> {
        let before_us = to_micros(before);
        let mut pruned = Pruned::default();
        loop {
            // One transaction per request: appends queued meanwhile go in between.
            let started = std::time::Instant::now();
            let (done, chunk) = oneshot::channel();
            let queue = self.writer().ok_or_else(queue::stopped)?;
            queue
                .send(writer::Work::Prune { before_us, done })
                .await
                .map_err(|_| queue::stopped())?;
            let chunk = chunk
                .await
                .map_err(|_| queue::stopped())?
                .map_err(Error::store)?;
            pruned.events += chunk.events;
            pruned.recordings += chunk.recordings;
            if chunk.events < PRUNE_CHUNK as u64 {
                return Ok(pruned);
            }
            pace_removals(started).await;
        }
    }

    async fn first_kept(&self) -> Result<i64, Error> {
        self.read(prune::first_kept).await
    }

    async fn last_sequence(&self) -> Result<i64, Error> {
        self.read(rows::last_sequence).await
    }

    async fn ping(&self) -> Result<(), Error> {
        let stopped = self
            .queue
            .read()
            .expect("queue lock poisoned")
            .as_ref()
            .is_none_or(mpsc::Sender::is_closed);
        if stopped {
            return Err(queue::stopped());
        }
        self.read(|c| c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|_| ())
    }

    async fn close(&self) {
        drop(self.queue.write().expect("queue lock poisoned").take());
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock poisoned"));
        let lock = self.lock.lock().expect("lock file lock poisoned").take();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
            // Only now may another process open the store.
            drop(lock);
        });
        if tokio::time::timeout(CLOSE_PATIENCE, joined).await.is_err() {
            tracing::warn!(
                "the store was still writing after {CLOSE_PATIENCE:?}; the next start replays its WAL"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::readers::configure_reader;
    use super::*;
    use crate::domain::RecordingState;
    use crate::store::columns::ListPart;

    /// A reading connection on an empty, migrated store, and FindRecordings' SQL.
    fn reader_with_find_recordings() -> (Connection, String) {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate(&mut conn).unwrap();
        configure_reader(&conn).unwrap();
        (conn, find_recordings_sql(|n| format!("?{n}")))
    }

    /// The steps of `sql`'s query plan with `params` bound.
    fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(params, |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The steps of the query plan of the part `part` of the listing `q`.
    fn list_plan(conn: &Connection, q: &ListQuery, part: ListPart) -> Vec<String> {
        let (sql, args) = list_recordings_sql(q, part, |n| format!("?{n}"));
        plan(conn, &sql, rusqlite::params_from_iter(&args))
    }

    /// Asserts that the plan reads `recordings` (as itself, `r` or `n`) `n` times, each a
    /// range of one stream's files by start (closed files by start, open ones on their own
    /// index); `stream_spans` is read by its key, and a step `skip` names is left out.
    fn assert_reads_ranges_by_start(steps: &[String], n: usize, skip: &str) {
        assert!(
            steps.contains(&"SEARCH stream_spans USING PRIMARY KEY (stream=?)".to_owned()),
            "{steps:#?}"
        );
        let reads: Vec<&String> = steps
            .iter()
            .filter(|s| s.starts_with("SEARCH") || s.starts_with("SCAN"))
            .filter(|s| !s.contains(" stream_spans ") && s.as_str() != skip)
            .collect();
        assert_eq!(reads.len(), n, "{steps:#?}");
        for step in reads {
            assert!(
                ["recordings_by_stream_start", "recordings_open_by_stream"]
                    .iter()
                    .any(|index| step
                        .contains(&format!("USING INDEX {index} (stream=? AND start_time"))),
                "{step}\nin {steps:#?}"
            );
        }
    }

    /// FindRecordings must stay an index lookup on a store of millions of recordings: every
    /// step of its plan that reads `recordings` goes through an index (a full scan would be
    /// correct and fast on a test's small store, so only the plan shows it).
    #[test]
    fn find_recordings_reads_recordings_only_through_indexes() {
        let (conn, sql) = reader_with_find_recordings();

        let steps = plan(
            &conn,
            &sql,
            rusqlite::params!["cam", 1, 2, None::<String>, 10],
        );

        assert_reads_ranges_by_start(&steps, 9, "");
    }

    /// ListRecordings of one stream in a window reads only ranges of that stream's files by
    /// start (and the correlated lookups of `not_superseded`), never every file after the
    /// window.
    #[test]
    fn a_list_window_of_a_stream_reads_ranges_of_its_files_by_start() {
        let (conn, _) = reader_with_find_recordings();
        let q = ListQuery {
            stream: Some("cam".into()),
            window_start: chrono::DateTime::from_timestamp(1_000, 0),
            window_end: chrono::DateTime::from_timestamp(2_000, 0),
            before_sequence: Some(100),
            limit: 20,
            ..ListQuery::default()
        };
        let steps = list_plan(&conn, &q, ListPart::All);

        // The window's files are gathered first (`r`), then filtered and sorted.
        assert!(steps.contains(&"MATERIALIZE r".to_owned()), "{steps:#?}");
        assert_reads_ranges_by_start(&steps, 6, "SCAN r");
    }

    /// ListRecordings in a window without a stream reads, past its walk of the newest
    /// recordings, each stream's ranges by start: a skip scan of the streams (one index
    /// step each), then the ranges, never all of `recordings` (for a Bloom filter of the
    /// join, say, or a walk down to the window).
    #[test]
    fn a_list_window_without_a_stream_reads_each_streams_ranges_after_its_walk() {
        let (conn, _) = reader_with_find_recordings();
        let q = ListQuery {
            app: Some("live".into()),
            window_start: chrono::DateTime::from_timestamp(1_000, 0),
            window_end: chrono::DateTime::from_timestamp(2_000, 0),
            before_sequence: Some(5_000),
            limit: 20,
            ..ListQuery::default()
        };
        let sizes = ListSizes {
            newest: 9_000,
            streams: 10,
            newest_created: 3_000_000_000,
        };
        let parts = list_parts(&q, sizes);
        assert_eq!(parts, [ListPart::After(3_999), ListPart::UpTo(3_999)]);

        let walk = list_plan(&conn, &q, parts[0]);
        let ranges = list_plan(&conn, &q, parts[1]);

        assert!(
            walk.iter()
                .any(|s| s.starts_with("SEARCH r USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")),
            "{walk:#?}"
        );
        assert!(!ranges.iter().any(|s| s.contains("BLOOM")), "{ranges:#?}");
        let reads: Vec<&String> = ranges
            .iter()
            .filter(|s| s.starts_with("SEARCH") || s.starts_with("SCAN"))
            .filter(|s| !["SCAN s", "SCAN r", "SCAN CONSTANT ROW"].contains(&s.as_str()))
            .collect();
        let skip = "USING COVERING INDEX recordings_by_stream_seq";
        assert_eq!(
            reads.iter().filter(|s| s.contains(skip)).count(),
            2,
            "{ranges:#?}"
        );
        // The ranges (`f`), and `not_superseded`'s lookups (`n`), each of one stream.
        let by_start = reads
            .iter()
            .filter(|s| {
                s.starts_with("SEARCH f USING INDEX ") || s.starts_with("SEARCH n USING INDEX ")
            })
            .filter(|s| {
                ["recordings_by_stream_start", "recordings_open_by_stream"]
                    .iter()
                    .any(|index| s.contains(&format!("{index} (stream=? AND start_time")))
            })
            .count();
        let spans = reads
            .iter()
            .filter(|s| s.contains(" stream_spans "))
            .count();
        assert_eq!((by_start, spans), (6, 1), "{ranges:#?}");
        assert_eq!(reads.len(), 9, "{ranges:#?}");
    }

    /// ListRecordings of the files recording now, or of the failed or the ended ones, each
    /// few among all, reads them from their own partial index, newest first from the
    /// page's cursor, instead of walking every recording; the completed ones, most of
    /// them, are walked by sequence.
    #[test]
    fn a_listing_of_a_rare_state_reads_its_own_index() {
        let (conn, _) = reader_with_find_recordings();
        for (state, read) in [
            (
                RecordingState::Recording,
                "SEARCH r USING INDEX recordings_recording (first_sequence<?)",
            ),
            (
                RecordingState::Failed,
                "SEARCH r USING INDEX recordings_failed (first_sequence<?)",
            ),
            (
                RecordingState::Ended,
                "SEARCH r USING INDEX recordings_ended (first_sequence<?)",
            ),
            (
                RecordingState::Complete,
                "SEARCH r USING INTEGER PRIMARY KEY (rowid<?)",
            ),
        ] {
            let q = ListQuery {
                app: Some("live".into()),
                state: Some(state),
                before_sequence: Some(100),
                limit: 20,
                ..ListQuery::default()
            };
            let steps = list_plan(&conn, &q, ListPart::All);

            assert_eq!(steps, [read], "{state:?}");
        }
    }

    /// A cached read is prepared once: binding other values does not make SQLite parse
    /// and plan it again (which cost FindRecordings most of its time).
    #[test]
    fn reads_are_not_prepared_again_for_each_new_binding() {
        let (conn, sql) = reader_with_find_recordings();

        let mut stmt = conn.prepare_cached(&sql).unwrap();
        for (stream, at) in [("cam_1", 1_000_000i64), ("cam_2", 2_000_000), ("cam_3", 7)] {
            let found = stmt
                .query_map(
                    rusqlite::params![stream, at, at + 1, None::<String>, 100],
                    rows::recording,
                )
                .unwrap()
                .count();
            assert_eq!(found, 0);
        }

        assert_eq!(stmt.get_status(rusqlite::StatementStatus::Run), 3);
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }
}
