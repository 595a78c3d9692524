//! The listener: one connection per replica that LISTENs for every replica's commits and
//! hands the new events to this replica's watchers, in sequence order. A notification
//! only wakes it; it reads what was committed from the table (a one-second poll backs up
//! a missed notification), and reads nothing while no watcher is connected.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{CREATE_WITHIN, read, read_events, writer};
use crate::error::Error;
use crate::store::{EventFilter, StoredEvent};

/// The listener re-reads the table this often even without a notification.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Events read from the table at a time.
const PAGE: usize = 512;

/// Follows commits of every replica and broadcasts them locally, in sequence order.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    pool: Pool,
    notify: broadcast::Sender<Arc<StoredEvent>>,
    mut last: i64,
) {
    loop {
        if let Err(e) = follow_commits(&config, &pool, &notify, &mut last).await {
            tracing::warn!(error = %format_args!("{e:#}"), "postgres listener lost its connection; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// With no watcher on this replica, moves `last` past every committed event instead of
/// reading them. Safe against a watcher arriving meanwhile: the end is read *before* the
/// check, and a watcher subscribes before it reads the store, so one that subscribed
/// after the check reads everything up to that end itself.
async fn nobody_follows(
    pool: &Pool,
    notify: &broadcast::Sender<Arc<StoredEvent>>,
    last: &mut i64,
) -> Result<bool, Error> {
    if notify.receiver_count() > 0 {
        return Ok(false);
    }
    let end: i64 = read(pool, async |client| {
        let row = client
            .query_one("SELECT coalesce(max(sequence), 0) FROM events", &[])
            .await
            .map_err(Error::store)?;
        Ok(row.get(0))
    })
    .await?;
    if notify.receiver_count() > 0 {
        return Ok(false);
    }
    *last = (*last).max(end);
    Ok(true)
}

/// The listener's connection did not answer while `doing`.
fn unanswered(doing: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "PostgreSQL did not answer within {} s while {doing}",
        CREATE_WITHIN.as_secs()
    )
}

/// Whether a notification on [`writer::CHANNEL`] announces a commit to this store: its
/// payload is the oid of the `events` table written (`table`, this store's), or empty from
/// a replica of an earlier version (which named no table).
fn announces(payload: &str, table: &str) -> bool {
    payload.is_empty() || payload == table
}

async fn follow_commits(
    config: &tokio_postgres::Config,
    pool: &Pool,
    notify: &broadcast::Sender<Arc<StoredEvent>>,
    last: &mut i64,
) -> anyhow::Result<()> {
    // Bounded as the pool's connections are: `connect_timeout` covers TCP only, and a
    // host that accepts and then says nothing would hold the listener (and every
    // WatchEvents stream on this replica) for good.
    let (client, mut connection) = tokio::time::timeout(CREATE_WITHIN, config.connect(NoTls))
        .await
        .map_err(|_| unanswered("connecting"))??;
    let (wake, mut woken) = mpsc::channel::<()>(1);
    // This store's `events` table, once known (until then every notification wakes).
    let own = Arc::new(std::sync::OnceLock::<String>::new());
    let driver = tokio::spawn({
        let own = own.clone();
        async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message
                    && own.get().is_none_or(|own| announces(n.payload(), own))
                {
                    let _ = wake.try_send(());
                }
            }
        }
    });
    let result = async {
        let listening = async {
            let table: String = client
                .query_one("SELECT 'events'::regclass::oid::text", &[])
                .await?
                .get(0);
            let _ = own.set(table);
            client
                .batch_execute(&format!("LISTEN {}", writer::CHANNEL))
                .await
        };
        tokio::time::timeout(CREATE_WITHIN, listening)
            .await
            .map_err(|_| unanswered("starting to listen"))??;
        loop {
            loop {
                if nobody_follows(pool, notify, last).await? {
                    break;
                }
                let page = read_events(pool, *last, &EventFilter::default(), PAGE).await?;
                let full = page.len() == PAGE;
                for event in page {
                    *last = event.sequence;
                    let _ = notify.send(Arc::new(event));
                }
                if !full {
                    break;
                }
            }
            tokio::select! {
                woke = woken.recv() => if woke.is_none() {
                    anyhow::bail!("notification connection closed");
                },
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commits_to_this_stores_table_wake_its_listener() {
        assert!(announces("16384", "16384"));
        assert!(!announces("16391", "16384"), "another schema's table");
        assert!(announces("", "16384"), "a replica of an earlier version");
    }
}
