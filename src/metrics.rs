//! Prometheus metrics, served at `GET /metrics` on the HTTP front.
//!
//! One process-wide recorder (the `metrics` facade is global), installed on first use.
//!
//! - `recording_events_build_info{version}`: 1, labelled with the running version;
//! - `recording_events_callbacks_total{outcome}`: callbacks received on either front, by
//!   outcome (`stored`, `duplicate`, or the error code in lower case, e.g.
//!   `invalid_argument`, `unauthenticated`), refused ones included;
//! - `recording_events_callback_seconds`: from validation to durable acknowledgement;
//! - `recording_events_store_batch_size`, `recording_events_store_commit_seconds`: group
//!   commit at work;
//! - `recording_events_store_queue_depth`, `recording_events_store_queue_capacity`:
//!   callbacks waiting for the writer, and how many may (`--ingest-queue`; beyond it,
//!   429 / RESOURCE_EXHAUSTED), read at each scrape;
//! - `recording_events_store_connections_abandoned_total`: PostgreSQL connections closed
//!   because the work on them did not finish in time or its caller left;
//! - `recording_events_store_pool_connections{state}` (`in_use`, `idle`),
//!   `recording_events_store_pool_waiting`, `recording_events_store_pool_max_connections`:
//!   on PostgreSQL, the replica's pooled connections (`--database-pool-size`), read at
//!   each scrape;
//! - `recording_events_watchers`: open WatchEvents streams;
//! - `recording_events_grpc_handled_total{method, code}`,
//!   `recording_events_grpc_handling_seconds{method}`: every gRPC call
//!   ([`crate::grpc_metrics`]);
//! - `recording_events_connections{front}`: connections open on each port (`http`,
//!   `grpc`), and `recording_events_connection_limit_waits_total{front}`, new connections
//!   that waited for a free one ([`crate::opening::Slots`], `--max-connections`);
//! - `recording_events_accept_failures_total{front}`: connections a port could not accept;
//! - `recording_events_tls_certificate_expiration_timestamp_seconds`: with TLS, when the
//!   certificate in use expires (Unix time);
//! - `recording_events_tls_handshake_failures_total{front}`: with TLS, handshakes that
//!   failed or timed out, by front (`http`, `grpc`): e.g. gRPC clients whose certificate
//!   `--tls-client-ca` does not accept;
//! - `recording_events_retention_removed_events_total`,
//!   `recording_events_retention_removed_recordings_total`: what `--retention` removed.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle; `None` if another
/// recorder was installed first by the embedding program.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(recorder) => recorder,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics disabled");
                    return None;
                }
            };
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps each histogram sample until it is folded into the buckets, which
/// happens at a scrape or at upkeep: without this, a service nobody scrapes would grow by
/// every sample it records. A plain thread, so that it runs whatever runtime (if any)
/// the recorder was installed from.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; scrapes still fold samples");
    }
}

/// Gauges read off their source at each scrape; `false` once the source is gone.
type Sampler = Box<dyn Fn() -> bool + Send + Sync>;

static SAMPLERS: Mutex<Vec<Sampler>> = Mutex::new(Vec::new());

/// Runs `sample` before every scrape, to set gauges that are cheaper to read when asked
/// than to keep current; it is forgotten once it returns `false` (its source dropped).
pub fn on_scrape(sample: impl Fn() -> bool + Send + Sync + 'static) {
    SAMPLERS
        .lock()
        .expect("metrics samplers poisoned")
        .push(Box::new(sample));
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    // A std Mutex: held only while the samplers set their gauges, never across an await.
    SAMPLERS
        .lock()
        .expect("metrics samplers poisoned")
        .retain(|sample| sample());
    handle.render()
}
