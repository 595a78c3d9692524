//! The checkpoint thread: copies committed WAL frames back into the database file off the
//! writer's path, and keeps the WAL bounded (see [`run`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as mpsc_std;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The checkpoint thread's own connection.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// How often the WAL is copied back into the database file while it is small.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(1000);

/// WAL frames (pages) beyond which the WAL is rewound to its start: 128 MiB of 4 KiB
/// pages. Under full load the rewind lands within a few hundred milliseconds, at ~300
/// MiB at most; `journal_size_limit` (384 MiB) keeps a rewound file for reuse. A rewind holds
/// the writer for 3–9 ms, so it should be rare: about every 2 s at full load.
const REWIND_AT_FRAMES: i64 = 32_768;

/// The writer is asked to finish the rewind once a pass found at most this many new
/// frames: it then copies about as many (plus its batch in progress) and syncs them.
/// Measured, with the database file synced beforehand (see [`run`]): 3–5 ms of the
/// writer's time under full load, 8–9 ms at half load; the passes still get this close
/// under full load.
const REWIND_WHEN_BEHIND: i64 = 128;

/// How long the checkpoint thread waits for the writer to finish a rewind.
const REWIND_PATIENCE: Duration = Duration::from_millis(100);

/// Copies committed WAL frames into the database file, off the writer's thread.
///
/// SQLite rewinds the WAL only when a write transaction starts with every frame already
/// copied back. Under steady load a checkpoint on another thread never sees that (the
/// writer appends while it copies), so the WAL would grow without bound, and each frame
/// appended past the end of the file costs the kernel a block allocation and a zeroed
/// page. So: PASSIVE checkpoints (they never block the writer or readers) every
/// [`CHECKPOINT_EVERY`], and back to back once the WAL passes [`REWIND_AT_FRAMES`]; when
/// few frames are left, `rewind` asks the writer to copy the rest itself between two
/// batches (see `writer::run`), after which its next transaction starts the WAL over.
/// Once the writer is gone, checkpoints fully and truncates the WAL.
///
/// SQLite syncs the database file only after a pass that copied every frame, which under
/// load is the writer's rewind: that sync would then flush everything the passes before it
/// copied (tens of MiB, 12–67 ms measured, with the writer held). So this thread syncs
/// `db` (the database file) itself before it asks for a rewind.
pub fn run(
    conn: Connection,
    db: std::fs::File,
    writer_gone: mpsc_std::Receiver<()>,
    rewind: Arc<AtomicBool>,
) {
    let mut wait = CHECKPOINT_EVERY;
    // The WAL's size after the previous pass, in frames.
    let mut last_frames = 0;
    loop {
        let mode = match writer_gone.recv_timeout(wait) {
            Err(mpsc_std::RecvTimeoutError::Timeout) => "PASSIVE",
            Ok(()) | Err(mpsc_std::RecvTimeoutError::Disconnected) => "TRUNCATE",
        };
        let started = Instant::now();
        let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        metrics::histogram!("recording_events_store_checkpoint_seconds")
            .record(started.elapsed().as_secs_f64());
        wait = CHECKPOINT_EVERY;
        match result {
            Ok((frames, _)) if frames >= REWIND_AT_FRAMES => {
                // Keep copying: each pass copies what was appended during the previous
                // one, so passes shrink until the rest is small enough for the writer.
                let appended = frames - std::mem::replace(&mut last_frames, frames).min(frames);
                wait = Duration::from_millis(1);
                if appended <= REWIND_WHEN_BEHIND {
                    let started = Instant::now();
                    if let Err(e) = db.sync_data() {
                        // The writer's rewind syncs the file again (SQLite's own sync).
                        tracing::warn!(error = %e, "syncing the database file failed");
                    }
                    metrics::histogram!("recording_events_store_checkpoint_sync_seconds")
                        .record(started.elapsed().as_secs_f64());
                    // Stay out of the writer's way until it has copied the rest.
                    rewind.store(true, Ordering::Relaxed);
                    let asked = Instant::now();
                    while rewind.load(Ordering::Relaxed) && asked.elapsed() < REWIND_PATIENCE {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Ok((frames, _)) => last_frames = frames,
            Err(e) if mode == "PASSIVE" => tracing::warn!(error = %e, "wal checkpoint failed"),
            // At shutdown the final checkpoint is a courtesy: the next start replays the WAL.
            Err(e) => tracing::debug!(error = %e, "final wal checkpoint failed"),
        }
        if mode == "TRUNCATE" {
            return;
        }
    }
}
