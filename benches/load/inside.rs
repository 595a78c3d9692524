//! What the service reports of itself around a load: its metrics and its threads' CPU.

use super::*;

/// Where the service's time goes: its own metrics (group commit, acknowledgement wait)
/// and its threads' CPU, read before and after a load; the difference describes it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Inside {
    batches: f64,
    batched: f64,
    commit_seconds: f64,
    commits_within_5ms: f64,
    rewinds: f64,
    rewind_seconds: f64,
    db_syncs: f64,
    db_sync_seconds: f64,
    acks: f64,
    ack_seconds: f64,
    acks_within_5ms: f64,
    writer_cpu: f64,
    checkpoint_cpu: f64,
    workers_cpu: f64,
}

impl Inside {
    pub(super) async fn read(server: &proc::Server) -> Inside {
        let text = match server.http {
            Some(addr) => client::http_get_text(addr, "/metrics").await,
            None => None,
        }
        .unwrap_or_default();
        // The unlabelled `name value` line of a metric.
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Inside {
            batches: value("recording_events_store_batch_size_count"),
            batched: value("recording_events_store_batch_size_sum"),
            commit_seconds: value("recording_events_store_commit_seconds_sum"),
            commits_within_5ms: value("recording_events_store_commit_seconds_bucket{le=\"0.005\"}"),
            rewinds: value("recording_events_store_rewind_seconds_count"),
            rewind_seconds: value("recording_events_store_rewind_seconds_sum"),
            db_syncs: value("recording_events_store_checkpoint_sync_seconds_count"),
            db_sync_seconds: value("recording_events_store_checkpoint_sync_seconds_sum"),
            acks: value("recording_events_callback_seconds_count"),
            ack_seconds: value("recording_events_callback_seconds_sum"),
            acks_within_5ms: value("recording_events_callback_seconds_bucket{le=\"0.005\"}"),
            writer_cpu: server.thread_cpu_seconds("sqlite-writer"),
            checkpoint_cpu: server.thread_cpu_seconds("sqlite-checkpoi"),
            workers_cpu: server.thread_cpu_seconds("tokio-rt-worker"),
        }
    }

    /// `self` - `before`, added to `total`.
    pub(super) fn add_since(self, before: Inside, total: &mut Inside) {
        total.batches += self.batches - before.batches;
        total.batched += self.batched - before.batched;
        total.commit_seconds += self.commit_seconds - before.commit_seconds;
        total.commits_within_5ms += self.commits_within_5ms - before.commits_within_5ms;
        total.rewinds += self.rewinds - before.rewinds;
        total.rewind_seconds += self.rewind_seconds - before.rewind_seconds;
        total.db_syncs += self.db_syncs - before.db_syncs;
        total.db_sync_seconds += self.db_sync_seconds - before.db_sync_seconds;
        total.acks += self.acks - before.acks;
        total.ack_seconds += self.ack_seconds - before.ack_seconds;
        total.acks_within_5ms += self.acks_within_5ms - before.acks_within_5ms;
        total.writer_cpu += self.writer_cpu - before.writer_cpu;
        total.checkpoint_cpu += self.checkpoint_cpu - before.checkpoint_cpu;
        total.workers_cpu += self.workers_cpu - before.workers_cpu;
    }

    /// [`Inside::print`] for the PostgreSQL backend: no WAL of its own, its writer a task
    /// on the request threads, and a commit a transaction on the server (the append
    /// lock, the reads, the writes and the server's fsync).
    pub(super) fn print_postgres(&self, name: &str) {
        println!(
            "- inside the service, {name}: batches of {:.1} callbacks, a transaction {:.2} \
             ms, {:.2}% over 5 ms; validation to acknowledgement {:.2} ms on average, \
             {:.2}% over 5 ms; CPU per callback of the service's threads {:.1} µs",
            self.batched / self.batches.max(1.0),
            self.commit_seconds / self.batches.max(1.0) * 1e3,
            100.0 * (1.0 - self.commits_within_5ms / self.batches.max(1.0)),
            self.ack_seconds / self.acks.max(1.0) * 1e3,
            100.0 * (1.0 - self.acks_within_5ms / self.acks.max(1.0)),
            self.workers_cpu / self.batched.max(1.0) * 1e6,
        );
    }

    pub(super) fn print(&self, name: &str) {
        let per = |seconds: f64| seconds / self.batched.max(1.0) * 1e6;
        println!(
            "- inside the service, {name}: batches of {:.1} callbacks, a commit (with its \
             fsync) {:.2} ms, {:.2}% over 5 ms; {:.0} WAL rewind(s) of {:.1} ms, after \
             database syncs of {:.1} ms; validation to acknowledgement \
             {:.2} ms on average, {:.2}% over 5 ms; CPU per callback: writer {:.1} µs, \
             checkpointer {:.1} µs, request threads {:.1} µs",
            self.batched / self.batches.max(1.0),
            self.commit_seconds / self.batches.max(1.0) * 1e3,
            100.0 * (1.0 - self.commits_within_5ms / self.batches.max(1.0)),
            self.rewinds,
            self.rewind_seconds / self.rewinds.max(1.0) * 1e3,
            self.db_sync_seconds / self.db_syncs.max(1.0) * 1e3,
            self.ack_seconds / self.acks.max(1.0) * 1e3,
            100.0 * (1.0 - self.acks_within_5ms / self.acks.max(1.0)),
            per(self.writer_cpu),
            per(self.checkpoint_cpu),
            per(self.workers_cpu),
        );
    }
}
