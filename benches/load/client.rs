//! Load generators: HTTP/1.1 over one connection per worker, and gRPC over one HTTP/2
//! connection per worker; each worker has one request in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use recording_events::pb::v1::VodCallBackRequest;
use recording_events::pb::v1::recording_event_client::RecordingEventClient;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::Channel;

pub const TOKEN: &str = "bench-token-0123456789";
const SEED: &str = include_str!("../../tests/payloads/seed_example.json");
const ASSET: &str = "afa6d03092982644bb25ef1f1a3da269";

/// How a run ends, and whether it is paced.
#[derive(Clone, Copy)]
pub struct Plan {
    pub workers: usize,
    /// Stop starting requests at this instant...
    pub until: Option<Instant>,
    /// ...or after this many per worker.
    pub per_worker: Option<u64>,
    /// Open-loop pacing: one request per worker every `pace`.
    pub pace: Option<Duration>,
}

/// What a run measured.
#[derive(Default)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The p-th percentile latency in ms.
    pub fn pct(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 * p) as usize).min(self.latencies_us.len() - 1);
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// Adds `other`'s requests; `elapsed` adds up too, when `other` is a later run of its
    /// own (its workers' totals are merged by the run itself).
    pub fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// How many cameras the callbacks are spread over: `BENCH_STREAMS`, default 1 (the seed
/// example's camera). With more, each callback goes to camera `cam_NNNNN`.
pub fn streams() -> u64 {
    static STREAMS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *STREAMS.get_or_init(|| env_count("BENCH_STREAMS", 1) as u64)
}

/// A positive number from the environment, else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// A ~1 KB callback (the seed example) made distinct by its asset id, so idempotency
/// cannot short-circuit the store, on one of [`streams`] cameras.
pub fn callback_body(run: &str, worker: usize, i: u64) -> Bytes {
    let body = SEED.replacen(ASSET, &format!("{run}-{worker}-{i}"), 1);
    let streams = streams();
    if streams == 1 {
        return Bytes::from(body);
    }
    let camera = (worker as u64 * 7_919 + i) % streams;
    let stream = format!("\"stream\": \"cam_{camera:05}\"");
    Bytes::from(body.replacen("\"stream\": \"886_142279\"", &stream, 1))
}

fn callback_request(run: &str, worker: usize, i: u64) -> VodCallBackRequest {
    serde_json::from_slice(&callback_body(run, worker, i)).unwrap()
}

async fn drive<F, Fut>(plan: Plan, worker: usize, mut send: F) -> Stats
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut stats = Stats::default();
    let mut next = Instant::now()
        + plan.pace.map_or(Duration::ZERO, |p| {
            p.mul_f64(worker as f64 / plan.workers as f64)
        });
    for i in 0.. {
        if plan.per_worker.is_some_and(|n| i >= n)
            || plan.until.is_some_and(|u| Instant::now() >= u)
        {
            break;
        }
        if let Some(pace) = plan.pace {
            // Tokio timers tick in milliseconds: latency is taken from the actual send, so
            // the timer's slack is not charged to the server.
            tokio::time::sleep_until(next.into()).await;
            next += pace;
        }
        let started = Instant::now();
        if send(i).await {
            stats.ok += 1;
            stats
                .latencies_us
                .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        } else {
            stats.failed += 1;
        }
    }
    stats
}

async fn run_workers<F, Fut>(plan: Plan, worker: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Stats> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..plan.workers).map(|w| tokio::spawn(worker(w))).collect();
    let mut total = Stats::default();
    for h in handles {
        total.merge(h.await.unwrap());
    }
    total.elapsed = started.elapsed();
    total
}

/// A TLS client that trusts only `cert_pem` (the service's self-signed certificate).
pub fn tls_connector(cert_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own.
async fn http1<IO>(io: IO) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// POSTs distinct callbacks to `addr`.
pub async fn http_load(addr: SocketAddr, run: &str, plan: Plan) -> Stats {
    https_load(addr, None, run, plan).await
}

/// POSTs distinct callbacks to `addr`, over TLS (HTTP/1.1) when `tls` is given, each
/// worker on one connection kept open.
pub async fn https_load(
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    run: &str,
    plan: Plan,
) -> Stats {
    let run: Arc<str> = run.into();
    run_workers(plan, move |w| {
        let (run, tls) = (run.clone(), tls.clone());
        async move {
            let mut sender = connect(addr, tls).await.unwrap();
            drive(plan, w, |i| {
                acknowledged(sender.send_request(callback_post(&run, w, i)))
            })
            .await
        }
    })
    .await
}

/// [`https_load`], but each callback on a connection of its own (TCP, TLS when `tls` is
/// given, one request, closed by the client), as a sender that keeps no connections.
pub async fn https_load_per_connection(
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    run: &str,
    plan: Plan,
) -> Stats {
    let run: Arc<str> = run.into();
    run_workers(plan, move |w| {
        let (run, tls) = (run.clone(), tls.clone());
        async move {
            drive(plan, w, |i| {
                let (tls, req) = (tls.clone(), callback_post(&run, w, i));
                async move {
                    match connect(addr, tls).await {
                        Ok(mut sender) => acknowledged(sender.send_request(req)).await,
                        Err(_) => false,
                    }
                }
            })
            .await
        }
    })
    .await
}

/// An HTTP/1.1 connection to `addr`, over TLS when `tls` is given.
async fn connect(
    addr: SocketAddr,
    tls: Option<TlsConnector>,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(match tls {
        None => http1(stream).await,
        Some(tls) => {
            let name = ServerName::try_from("localhost").unwrap();
            http1(tls.connect(name, stream).await?).await
        }
    })
}

/// `Bearer {TOKEN}`, made once: the load generator's own cost per request stays low.
static AUTHORIZATION: std::sync::LazyLock<hyper::header::HeaderValue> =
    std::sync::LazyLock::new(|| format!("Bearer {TOKEN}").parse().unwrap());

/// The callback POST of worker `w`'s `i`-th request.
fn callback_post(run: &str, w: usize, i: u64) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(recording_events::http::CALLBACK_PATH)
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("authorization", AUTHORIZATION.clone())
        .body(Full::new(callback_body(run, w, i)))
        .unwrap()
}

/// Whether the answer to `sent` is the service's acknowledgement (200, status 0).
async fn acknowledged(
    sent: impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
) -> bool {
    let Ok(resp) = sent.await else { return false };
    let ok = resp.status() == 200;
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    ok && body.starts_with(br#"{"status":0"#)
}

/// Calls VodCallBack with distinct callbacks.
pub async fn grpc_load(addr: SocketAddr, run: &str, plan: Plan) -> Stats {
    let run: Arc<str> = run.into();
    run_workers(plan, move |w| {
        let run = run.clone();
        async move {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let client = RecordingEventClient::new(channel);
            drive(plan, w, |i| {
                let mut client = client.clone();
                let mut req = tonic::Request::new(callback_request(&run, w, i));
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
                async move {
                    client
                        .vod_call_back(req)
                        .await
                        .is_ok_and(|r| r.get_ref().status == 0)
                }
            })
            .await
        }
    })
    .await
}

/// GET `path` on a connection of its own.
async fn get(addr: SocketAddr, path: &str) -> Option<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(req).await.ok()
}

/// GET `path`; the status code.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    Some(get(addr, path).await?.status().as_u16())
}

/// GET `path`; the body, when the answer is 200.
pub async fn http_get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let response = get(addr, path).await?;
    if response.status() != hyper::StatusCode::OK {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}
