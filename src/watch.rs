//! WatchEvents: replay from the store, then follow live commits, with no gap and no
//! duplicate at the switch.
//!
//! How: subscribe to live commits *before* reading the store. Everything committed before
//! the read is in the read; everything committed after it is in the subscription (the
//! writer announces after committing, in sequence order). Live events at or below the
//! cursor (the last sequence handled) were in the replay and are skipped. A watcher that
//! falls more than the subscription's buffer behind is told it lagged; it then reads the
//! missed events from the store, the same way. Ingestion never waits for a watcher.

use std::sync::Arc;

use tokio::sync::{broadcast::error::RecvError, mpsc, watch as signal};

use crate::error::{Code, Error};
use crate::store::{EventFilter, Store, StoredEvent};

/// Events read from the store per query while replaying.
const REPLAY_PAGE: usize = 512;

/// Starts watching: returns the receiving end; a task feeds it until the receiver is
/// dropped, the store stops, or `stop` turns true (server shutdown). On shutdown the
/// stream ends with `Unavailable`, so the client knows to resume elsewhere or later.
pub fn watch(
    store: Arc<dyn Store>,
    after_sequence: i64,
    filter: EventFilter,
    buffer: usize,
    mut stop: signal::Receiver<bool>,
) -> mpsc::Receiver<Result<Arc<StoredEvent>, Error>> {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    tokio::spawn(async move {
        let watchers = metrics::gauge!("recording_events_watchers");
        watchers.increment(1.0);
        let mut cursor = after_sequence;
        let outcome = tokio::select! {
            outcome = async {
                check_cursor(&*store, after_sequence).await?;
                loop {
                    match follow(&*store, &mut cursor, &filter, &tx).await {
                        Ok(Flow::CatchUp) => continue,
                        Ok(Flow::Stop) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            } => outcome,
            _ = stop.wait_for(|stop| *stop) => Err(Error::new(
                Code::Unavailable,
                "the server is shutting down; resume with after_sequence = your last sequence",
            )),
        };
        if let Err(e) = outcome {
            let _ = tx.send(Err(e)).await;
        }
        watchers.decrement(1.0);
    });
    rx
}

/// A cursor past the newest sequence this store has handed out cannot be one of its
/// events: it comes from another store, or from this one before it was restored from an
/// older backup. Waiting on it would skip, unseen, the new events numbered up to it.
async fn check_cursor(store: &dyn Store, after_sequence: i64) -> Result<(), Error> {
    let newest = store.last_sequence().await?;
    if after_sequence > newest {
        return Err(Error::new(
            Code::OutOfRange,
            format!(
                "after_sequence: {after_sequence} is past the newest event of this store \
                 ({newest}); the events you saw are not in it (another store, or one restored \
                 from an older backup): resume with an after_sequence of at most {newest}"
            ),
        ));
    }
    Ok(())
}

enum Flow {
    /// Fell behind the live buffer: replay from the store again.
    CatchUp,
    /// The client left or the store stopped.
    Stop,
}

type Sink = mpsc::Sender<Result<Arc<StoredEvent>, Error>>;

async fn follow(
    store: &dyn Store,
    cursor: &mut i64,
    filter: &EventFilter,
    tx: &Sink,
) -> Result<Flow, Error> {
    let mut live = store.subscribe();
    loop {
        let page = store
            .events_after(*cursor, filter.clone(), REPLAY_PAGE)
            .await?;
        // Read after the page: had retention removed events past the cursor before or
        // while it was read, this shows it, and the client is told instead of skipping
        // them. A cursor of 0 means "from the oldest event kept".
        let first_kept = store.first_kept().await?;
        if *cursor > 0 && *cursor + 1 < first_kept {
            return Err(Error::new(
                Code::OutOfRange,
                format!(
                    "after_sequence: the events after {} up to {} were removed by retention; \
                     resume with after_sequence = 0 to read from the oldest event kept",
                    *cursor,
                    first_kept - 1
                ),
            ));
        }
        let full = page.len() == REPLAY_PAGE;
        for event in page {
            *cursor = event.sequence;
            if tx.send(Ok(Arc::new(event))).await.is_err() {
                return Ok(Flow::Stop);
            }
        }
        if !full {
            break;
        }
    }
    loop {
        let received = tokio::select! {
            r = live.recv() => r,
            () = tx.closed() => return Ok(Flow::Stop),
        };
        match received {
            Ok(event) if event.sequence <= *cursor => continue,
            Ok(event) => {
                *cursor = event.sequence;
                if filter.matches(&event.callback) && tx.send(Ok(event)).await.is_err() {
                    return Ok(Flow::Stop);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    cursor = *cursor,
                    "watcher lagged, catching up from the store"
                );
                return Ok(Flow::CatchUp);
            }
            Err(RecvError::Closed) => return Ok(Flow::Stop),
        }
    }
}
