//! The hand-off between request handlers and a backend's single writer: a bounded queue
//! of appends, each with a oneshot for its outcome. Shared by both backends.

use tokio::sync::{mpsc, oneshot};

use crate::error::{Code, Error};
use crate::store::{Appended, NewEvent};

/// One queued append and where to send its outcome.
pub struct Job {
    pub event: NewEvent,
    pub done: oneshot::Sender<Result<Appended, Error>>,
    /// When it was queued: the writer reports how long jobs waited for their batch.
    pub queued_at: std::time::Instant,
}

/// Shows how many callbacks wait in `queue` for the writer, and how many may, in
/// /metrics (read at each scrape, while the writer takes from it).
pub fn report_depth<W: Send + 'static>(queue: &mpsc::Sender<W>) {
    let queue = queue.downgrade();
    crate::metrics::on_scrape(move || {
        let Some(queue) = queue.upgrade() else {
            return false;
        };
        let depth = queue.max_capacity() - queue.capacity();
        metrics::gauge!("recording_events_store_queue_depth").set(depth as f64);
        metrics::gauge!("recording_events_store_queue_capacity").set(queue.max_capacity() as f64);
        true
    });
}

/// Queues an append and waits until the writer has committed it (or failed).
///
/// # Errors
/// `ResourceExhausted` at once when the queue is full (the caller retries: memory stays
/// bounded); `Unavailable` when the writer has stopped; else the writer's error.
pub async fn submit(queue: &mpsc::Sender<Job>, event: NewEvent) -> Result<Appended, Error> {
    submit_as(queue, event, |job| job).await
}

/// [`submit`] on a queue whose items wrap a [`Job`] (`wrap` makes one).
///
/// # Errors
/// As [`submit`].
pub async fn submit_as<W>(
    queue: &mpsc::Sender<W>,
    event: NewEvent,
    wrap: impl FnOnce(Job) -> W,
) -> Result<Appended, Error> {
    let (done, outcome) = oneshot::channel();
    let queued_at = std::time::Instant::now();
    queue
        .try_send(wrap(Job {
            event,
            done,
            queued_at,
        }))
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::new(
                Code::ResourceExhausted,
                "too many callbacks waiting to be stored, retry shortly",
            ),
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })?;
    outcome.await.map_err(|_| stopped())?
}

/// The error of an append the writer can no longer take (it stopped, or the store closed).
pub fn stopped() -> Error {
    Error::store(std::io::Error::other("the store writer has stopped"))
}
