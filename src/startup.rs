//! Building and running the application: open the store, resolve credentials, bind both
//! listeners (port 0 allowed: the real ports are reported), then serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic_health::pb::health_server::HealthServer;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::credentials;
use crate::grpc;
use crate::http::{self, HttpState};
use crate::opening::{Opening, Slots};
use crate::pb;
use crate::readiness::{Readiness, StoppingHealth};
use crate::service::RecordingService;
use crate::store;
use crate::tls::{ClientFiles, Tls};
use crate::token::Tokens;

/// A built application: store open, listeners bound, not yet serving.
pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    service: RecordingService,
    auth: Arc<Authenticator>,
    tokens: Option<Arc<Tokens>>,
    max_body_bytes: usize,
    body_read_timeout: std::time::Duration,
    header_read_timeout: std::time::Duration,
    /// How long requests in flight may take to finish once stopping starts.
    shutdown_timeout: std::time::Duration,
    /// How long to go on serving, not ready, once told to stop.
    shutdown_delay: std::time::Duration,
    /// Connections open at once on each port.
    max_connections: usize,
    /// When a gRPC connection is asked to close.
    max_connection_age: Option<std::time::Duration>,
    /// WatchEvents streams open at once.
    max_watchers: usize,
    /// Calls (HTTP/2 streams) open at once on one gRPC connection.
    max_concurrent_streams: u32,
    /// Both fronts speak TLS only, when set.
    tls: Option<Tls>,
    keepalive: (std::time::Duration, std::time::Duration),
    /// `--retention` and how often it runs.
    retention: Option<(std::time::Duration, std::time::Duration)>,
}

impl Application {
    /// Opens the store, resolves credentials and binds both addresses.
    ///
    /// # Errors
    /// When the database cannot be opened, a credential setting is invalid, or an address
    /// cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let args = &settings.args;
        if let Some(age) = args.retention {
            anyhow::ensure!(!age.is_zero(), "--retention: must be longer than 0");
            anyhow::ensure!(
                !args.retention_every.is_zero(),
                "--retention-every: must be longer than 0"
            );
        }
        anyhow::ensure!(
            !args.header_read_timeout.is_zero(),
            "--header-read-timeout: must be longer than 0"
        );
        anyhow::ensure!(
            args.max_connections > 0,
            "--max-connections: must be at least 1"
        );
        anyhow::ensure!(args.max_watchers > 0, "--max-watchers: must be at least 1");
        anyhow::ensure!(
            args.max_concurrent_streams > 0,
            "--max-concurrent-streams: must be at least 1"
        );
        anyhow::ensure!(
            args.max_connection_age.is_none_or(|age| !age.is_zero()),
            "--max-connection-age: must be longer than 0"
        );
        crate::metrics::handle();
        let version = env!("CARGO_PKG_VERSION");
        metrics::gauge!("recording_events_build_info", "version" => version).set(1.0);
        tracing::info!(version, "recording-events starting");
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let clients = args.tls_client_ca.clone().map(|ca| ClientFiles {
                    ca,
                    crl: args.tls_client_crl.clone(),
                });
                anyhow::ensure!(
                    clients.is_some() || args.tls_client_crl.is_none(),
                    "--tls-client-crl needs --tls-client-ca"
                );
                Some(Tls::load(cert, key, clients)?)
            }
            _ => {
                anyhow::ensure!(
                    args.tls_client_ca.is_none() && args.tls_client_crl.is_none(),
                    "--tls-client-ca and --tls-client-crl need --tls-cert and --tls-key"
                );
                None
            }
        };
        let store = store::open(
            args.database_url.expose(),
            args.ingest_queue,
            args.database_pool_size.into(),
        )
        .await
        .with_context(|| format!("cannot open the store {:?}", args.database_url))?;
        // Where, never a password (see DatabaseUrl's Display).
        tracing::info!(database = %args.database_url, "store open");
        let service = RecordingService::new(store, settings.clock.clone());
        let grpc_listener = TcpListener::bind(args.grpc_addr)
            .await
            .with_context(|| format!("--grpc-addr: cannot listen on {}", args.grpc_addr))?;
        let http_listener = TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("--http-addr: cannot listen on {}", args.http_addr))?;
        // Last, once nothing else can refuse the start: a token generated on the first start
        // is kept and printed only once, so a start refused after it had been (the store
        // unreachable, a port taken) would leave the operator a token that no later start
        // shows again.
        let tokens = credentials::access_tokens(&settings)?;
        let mut auth = credentials::authenticator(&settings)?;
        if let Some(tokens) = &tokens {
            auth = auth.with_access_tokens(tokens.clone());
        }
        let auth = Arc::new(auth);
        Ok(Application {
            grpc_listener,
            http_listener,
            service,
            auth,
            tokens,
            max_body_bytes: args.max_body_bytes,
            body_read_timeout: args.body_read_timeout,
            header_read_timeout: args.header_read_timeout,
            shutdown_timeout: args.shutdown_timeout,
            shutdown_delay: args.shutdown_delay,
            max_connections: args.max_connections,
            max_connection_age: args.max_connection_age,
            max_watchers: args.max_watchers,
            max_concurrent_streams: args.max_concurrent_streams,
            tls,
            keepalive: settings.keepalive,
            retention: args.retention.map(|age| (age, args.retention_every)),
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves gRPC and HTTP until `stops` yields (or ends): then reports not ready,
    /// serves on for `--shutdown-delay` (cut short by a second item, or the end of
    /// `stops`), stops accepting, lets requests in flight finish (each acknowledged
    /// callback is already on disk), closes the store (SQLite: the WAL copied back into
    /// the database file), and returns.
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn run_until_stopped(
        self,
        stops: impl Stream<Item = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (grpc_addr, http_addr) = (self.grpc_addr(), self.http_addr());
        let readiness = Readiness::new(self.service.store().clone());
        readiness.start().await;
        // One signal, two servers: a watch channel that both wait on.
        let (stop_tx, stop_rx) = watch::channel(false);
        let delay = self.shutdown_delay;
        let stopping = readiness.clone();
        tokio::spawn(async move {
            let mut stops = std::pin::pin!(stops);
            stops.next().await;
            stopping.stopping().await;
            if !delay.is_zero() {
                tracing::info!(
                    "stopping: not ready, still serving for {} (--shutdown-delay; a second \
                     signal ends it)",
                    humantime::format_duration(delay)
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stops.next() => tracing::info!("second signal: ending the shutdown delay"),
                }
            }
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        if let Some((age, every)) = self.retention {
            crate::retention::spawn(self.service.clone(), age, every, stopped(stop_rx.clone()));
        }
        if let Some(tls) = &self.tls {
            tracing::info!("TLS on both fronts: clients connect with https:// and TLS");
            if tls.checks_revocation() {
                tracing::info!(
                    "gRPC clients must present a certificate issued by --tls-client-ca and not \
                     revoked in --tls-client-crl"
                );
            } else if tls.requires_client_certificates() {
                tracing::info!("gRPC clients must present a certificate issued by --tls-client-ca");
            }
        }
        on_hangup(self.tls.clone(), stopped(stop_rx.clone()));
        let grpc_server = grpc_server(
            self.grpc_listener,
            self.tls.as_ref(),
            self.service.clone(),
            self.auth.clone(),
            readiness.grpc_service(stop_rx.clone()),
            stop_rx.clone(),
            GrpcLimits {
                keepalive: self.keepalive,
                max_message_bytes: self.max_body_bytes,
                opening: self.header_read_timeout,
                max_connections: self.max_connections,
                max_connection_age: self.max_connection_age,
                max_watchers: self.max_watchers,
                max_concurrent_streams: self.max_concurrent_streams,
            },
        )?;
        let http_tls = self.tls.map(|tls| tls.http);
        let service = self.service.clone();
        let http_state = Arc::new(HttpState {
            service: self.service,
            readiness,
            auth: self.auth,
            tokens: self.tokens,
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            header_read_timeout: self.header_read_timeout,
            keepalive: self.keepalive,
        });
        let http_server = http::serve(
            self.http_listener,
            Slots::new("http", self.max_connections),
            http_tls,
            http_state,
            stopped(stop_rx.clone()),
        );

        tracing::info!("grpc listening on {grpc_addr}");
        tracing::info!("http listening on {http_addr}");
        let servers = async { tokio::join!(grpc_server, http_server) };
        // Requests get --shutdown-timeout to finish once stopping starts; then we leave
        // anyway (every acknowledged callback is already on disk).
        let timeout = self.shutdown_timeout;
        let grace = async {
            stopped(stop_rx).await;
            tokio::time::sleep(timeout).await;
        };
        tokio::select! {
            (grpc_result, ()) = servers => grpc_result.context("grpc server failed")?,
            () = grace => tracing::warn!(
                "requests still open after --shutdown-timeout {}; stopping anyway",
                humantime::format_duration(timeout)
            ),
        }
        service.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What the gRPC front bounds.
struct GrpcLimits {
    /// HTTP/2 keep-alive ping interval and timeout.
    keepalive: (std::time::Duration, std::time::Duration),
    /// The largest request message, decompressed.
    max_message_bytes: usize,
    /// How long a new connection may take to send the HTTP/2 preface.
    opening: std::time::Duration,
    /// How many connections may be open at once.
    max_connections: usize,
    /// When each connection is asked to close (`--max-connection-age`).
    max_connection_age: Option<std::time::Duration>,
    /// How many WatchEvents streams may be open at once (`--max-watchers`).
    max_watchers: usize,
    /// How many calls one connection may have open at once (`--max-concurrent-streams`).
    max_concurrent_streams: u32,
}

/// The gRPC server on `listener` (over TLS when `tls` is given): health, reflection v1
/// and v1alpha (grpcurl 1.8 asks for v1alpha, newer tools for v1), and `service`.
fn grpc_server(
    listener: TcpListener,
    tls: Option<&Tls>,
    service: RecordingService,
    auth: Arc<Authenticator>,
    health_service: HealthServer<StoppingHealth>,
    mut stop_rx: watch::Receiver<bool>,
    limits: GrpcLimits,
) -> anyhow::Result<BoxFuture<Result<(), tonic::transport::Error>>> {
    let GrpcLimits {
        keepalive,
        max_message_bytes,
        opening,
        max_connections,
        max_connection_age,
        max_watchers,
        max_concurrent_streams,
    } = limits;
    let slots = Slots::new("grpc", max_connections);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc's error details, so grpcurl can show those of an error.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let mut server =
        tonic::transport::Server::builder().max_concurrent_streams(max_concurrent_streams);
    if let Some(age) = max_connection_age {
        server = server.max_connection_age(age);
    }
    let router = server
        .layer(crate::request_id::RequestIdLayer)
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .layer(crate::open_streams::OpenStreamsLayer::new(max_watchers))
        // A WatchEvents stream may stay quiet for hours: pings keep it alive through load
        // balancers and NATs that drop idle connections, and end it (freeing the watcher)
        // when the client has gone without closing.
        .http2_keepalive_interval(Some(keepalive.0))
        .http2_keepalive_timeout(Some(keepalive.1))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(grpc::server(
            service,
            auth,
            stop_rx.clone(),
            max_message_bytes,
            max_watchers,
        ));
    let stopping = stop_rx.clone();
    let stop = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    Ok(match tls {
        Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
            ReceiverStream::new(tls.incoming(listener, slots, opening, stopping)),
            stop,
        )),
        None => Box::pin(router.serve_with_incoming_shutdown(
            plain_incoming(listener, slots, opening, stopping),
            stop,
        )),
    })
}

/// Plain-text connections accepted on `listener` for the gRPC server, each to send the
/// HTTP/2 preface within `opening` and before `stop` turns true. Accepted by [`http::accept`], which waits a little
/// after a failure (no descriptor left, say): tonic's own listener retries at once, a
/// busy loop for as long as the failure lasts.
fn plain_incoming(
    listener: TcpListener,
    slots: Slots,
    opening: std::time::Duration,
    stop: watch::Receiver<bool>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Opening<tokio::net::TcpStream>>> {
    futures_util::stream::unfold(listener, move |listener| {
        let (slots, stop) = (slots.clone(), stop.clone());
        async move {
            let (stream, _, slot) = http::accept(&listener, &slots).await;
            // Small request/response pairs: without TCP_NODELAY, Nagle plus delayed ACKs add
            // ~40 ms to a reply.
            let _ = stream.set_nodelay(true);
            Some((
                Ok(Opening::until(stream, slot, opening, Some(stop))),
                listener,
            ))
        }
    })
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// At each SIGHUP until `stop`: with TLS, reads its files again (a pair that does not
/// load keeps the current certificate); without, only says there is nothing to reload.
/// Either way SIGHUP never ends the service: its default action would kill it at once,
/// requests in flight and all, and supervisors and log rotation send it to mean
/// "reload". The handler is registered before this returns (before serving), so a
/// SIGHUP sent once the addresses are printed never exits the process.
fn on_hangup(tls: Option<Tls>, stop: impl Future<Output = ()> + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: a new TLS certificate needs a restart");
            return;
        }
    };
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                received = hangup.recv() => if received.is_none() { return },
                () = &mut stop => return,
            }
            let Some(tls) = &tls else {
                tracing::info!("SIGHUP: nothing to reload without TLS; still serving");
                continue;
            };
            match tls.reload() {
                Ok(()) if tls.checks_revocation() => tracing::info!(
                    "SIGHUP: TLS certificate reloaded, with the client CAs and revocation lists"
                ),
                Ok(()) if tls.requires_client_certificates() => {
                    tracing::info!("SIGHUP: TLS certificate reloaded, with the client CAs");
                }
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "SIGHUP: TLS certificate not reloaded; keeping the current one"
                ),
            }
        }
    });
}
