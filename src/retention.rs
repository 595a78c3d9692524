//! Retention (`--retention`): a task that removes, at start and then periodically, the
//! events older than the configured age and the recordings none of whose events is left
//! (see [`crate::store::Store::prune`]). A failed run is logged and retried at the next.

use crate::service::RecordingService;

/// Removes what is older than `age` now, then every `every`, until `stop`.
pub fn spawn(
    service: RecordingService,
    age: std::time::Duration,
    every: std::time::Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    tracing::info!(
        retention = %humantime::format_duration(age),
        every = %humantime::format_duration(every),
        "retention on: older events and their recordings are removed"
    );
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => return,
            }
            match service.prune_older_than(age).await {
                Ok(pruned) => {
                    metrics::counter!("recording_events_retention_removed_events_total")
                        .increment(pruned.events);
                    metrics::counter!("recording_events_retention_removed_recordings_total")
                        .increment(pruned.recordings);
                    if pruned.events > 0 {
                        tracing::info!(
                            events = pruned.events,
                            recordings = pruned.recordings,
                            "retention removed old events"
                        );
                    }
                }
                Err(e) => tracing::warn!(reason = %e, "retention failed; retrying at the next run"),
            }
        }
    });
}
