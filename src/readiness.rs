//! Readiness, as `/readyz` and `grpc.health.v1.Health` report it: ready while the store
//! answers, not ready once stopping starts. Both fronts read the same state, so a load
//! balancer or a client-side health check sees what a Kubernetes probe sees.
//!
//! gRPC health is pushed, not asked for (tonic's health service only reports what it is
//! told), so a task asks the store every [`CHECK_EVERY`] and reports changes; `Watch`
//! streams get each change, and end when the server stops (they would otherwise hold a
//! graceful stop for its whole timeout).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{Mutex, watch};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::error::{Chain, Code, Error};
use crate::pb::v1::recording_event_server;
use crate::store::Store;

/// How often the store is asked whether it answers, for gRPC health.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A store that has not answered by then is not ready (a database host that drops
/// packets would otherwise hold a check for minutes, and gRPC health at its last status).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The names gRPC health reports: the server as a whole (`""`) and the service.
const NAMES: [&str; 2] = ["", recording_event_server::SERVICE_NAME];

/// Why a stopping server is not ready.
const STOPPING: &str = "the server is shutting down";

/// The readiness both fronts report.
pub struct Readiness {
    store: Arc<dyn Store>,
    health: HealthReporter,
    /// Set once stopping starts; never cleared.
    stopping: AtomicBool,
    /// What gRPC health last reported (true: SERVING). Held while reporting, so that a
    /// store check that ends after stopping began cannot report SERVING again.
    reported: Mutex<bool>,
}

impl Readiness {
    /// Ready (the store was just opened).
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Readiness {
            store,
            health: HealthReporter::new(),
            stopping: AtomicBool::new(false),
            reported: Mutex::new(true),
        })
    }

    /// `grpc.health.v1.Health` for these statuses; its `Watch` streams end with
    /// UNAVAILABLE once `stop` turns true, after the last change.
    pub fn grpc_service(&self, stop: watch::Receiver<bool>) -> HealthServer<StoppingHealth> {
        HealthServer::new(StoppingHealth {
            inner: HealthService::from_health_reporter(self.health.clone()),
            stop,
        })
    }

    /// `/readyz`: whether the service is ready, asking the store.
    ///
    /// # Errors
    /// `Unavailable` once stopping, or when the store does not answer.
    pub async fn check(&self) -> Result<(), Error> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::new(Code::Unavailable, STOPPING));
        }
        self.ask_store().await
    }

    async fn ask_store(&self) -> Result<(), Error> {
        tokio::time::timeout(ANSWER_WITHIN, self.store.ping())
            .await
            .unwrap_or_else(|_| {
                Err(Error::store(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {}",
                        humantime::format_duration(ANSWER_WITHIN)
                    ),
                )))
            })
    }

    /// Stopping has started: not ready from now on, on both fronts.
    pub async fn stopping(&self) {
        let mut reported = self.reported.lock().await;
        self.stopping.store(true, Ordering::Release);
        *reported = false;
        self.report(false).await;
    }

    /// Reports ready, then asks the store every [`CHECK_EVERY`] and reports what
    /// changed, until stopping.
    pub async fn start(self: &Arc<Self>) {
        self.report(true).await;
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                if this.stopping.load(Ordering::Acquire) {
                    return;
                }
                let answer = this.ask_store().await;
                let mut reported = this.reported.lock().await;
                if this.stopping.load(Ordering::Acquire) {
                    return;
                }
                if answer.is_ok() == *reported {
                    continue;
                }
                *reported = answer.is_ok();
                match answer {
                    Ok(()) => tracing::info!("ready again: the store answers"),
                    Err(e) => {
                        tracing::warn!(reason = %Chain(&e), "not ready: the store does not answer");
                    }
                }
                this.report(*reported).await;
            }
        });
    }

    /// Reports SERVING or NOT_SERVING for every name, and the metric.
    async fn report(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in NAMES {
            self.health.set_service_status(name, status).await;
        }
        metrics::gauge!("recording_events_ready").set(f64::from(u8::from(ready)));
    }
}

/// tonic's health service, whose `Watch` streams end once the server stops.
pub struct StoppingHealth {
    inner: HealthService,
    stop: watch::Receiver<bool>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for StoppingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        // A change is sent before the end: the status a stopping server reports
        // (NOT_SERVING) reaches the client before its stream ends.
        let stream =
            futures_util::stream::unfold(Some((statuses, self.stop.clone())), |state| async move {
                let (mut statuses, mut stop) = state?;
                let status = tokio::select! {
                    biased;
                    status = statuses.next() => status,
                    _ = stop.wait_for(|stop| *stop) => {
                        return Some((Err(Status::unavailable(STOPPING)), None));
                    }
                };
                status.map(|s| (s, Some((statuses, stop))))
            });
        Ok(Response::new(Box::pin(stream)))
    }
}
