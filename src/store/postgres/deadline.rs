//! Time bounds on the work done over a pooled connection. A database that stops answering
//! (a host that still acknowledges packets, a statement waiting behind an operator's
//! `LOCK TABLE`) would otherwise hold a request, and the connection it runs on, for ever:
//! past the bound, or when the request is dropped (its client gave up, its deadline
//! passed), the statement is cancelled and the connection closed, never pooled again.

use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use tokio_postgres::NoTls;

/// The most a read (a lookup, a page of events, a readiness check) may take.
pub const READ_WITHIN: Duration = Duration::from_secs(10);
/// The most a cancel request may take: it needs a connection of its own.
const CANCEL_WITHIN: Duration = Duration::from_secs(10);

/// The work on a connection did not finish within its bound.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL did not answer within {} s", .0.as_secs())]
pub struct TimedOut(pub Duration);

/// Runs `work` on `client` within `limit`. Finished (with or without an error), the
/// connection goes back to the pool; otherwise — past `limit`, or when this future is
/// dropped — it is abandoned (see [`Unfinished`]).
pub async fn within<R>(
    client: Object,
    limit: Duration,
    work: impl AsyncFnOnce(&mut Object) -> R,
) -> Result<R, TimedOut> {
    let mut unfinished = Unfinished(Some(client), Instant::now());
    let client = unfinished.0.as_mut().expect("the connection is held");
    let outcome = tokio::time::timeout(limit, work(client)).await;
    match outcome {
        Ok(outcome) => {
            // Back to the pool.
            drop(unfinished.0.take());
            Ok(outcome)
        }
        Err(_) => Err(TimedOut(limit)),
    }
}

/// A connection whose work, begun at the instant held, has not finished. Dropped so, it
/// asks the server to cancel the statement in flight (a query waiting for a lock ends
/// now, not when it would have answered), then closes the connection: what is left on it
/// (a statement, a transaction and its locks) is the server's to end, and no later
/// request queues behind it. The pool's idle connections not taken since that instant are
/// closed too: a silent host would otherwise cost one timeout per connection it holds,
/// each request in turn.
struct Unfinished(Option<Object>, Instant);

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        tracing::debug!("abandoning a PostgreSQL connection whose work did not finish");
        metrics::counter!("recording_events_store_connections_abandoned_total").increment(1);
        let cancel = client.cancel_token();
        let pool = Object::pool(&client);
        let connection = Object::take(client);
        if let Some(pool) = pool {
            let began = self.1;
            let idle = pool.retain(|_, used| used.recycled.unwrap_or(used.created) >= began);
            if !idle.removed.is_empty() {
                tracing::debug!(
                    closed = idle.removed.len(),
                    "closing the pooled connections idle since before that work began"
                );
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CANCEL_WITHIN, cancel.cancel_query(NoTls)).await;
                drop(connection);
            });
        }
    }
}
