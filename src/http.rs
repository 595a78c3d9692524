//! The HTTP front (hyper): Huawei's JSON callback mapped onto the same
//! [`RecordingService::vod_callback`] the gRPC method calls, plus health endpoints.
//! Every reply, success or failure, is the envelope Huawei expects.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Authenticator, Callback};
use crate::error::{Code, Error, Throttle};
use crate::oauth::{self, TOKEN_PATH};
use crate::opening::{Opening, Slot, Slots};
use crate::pb::v1::VodCallBackRequest;
use crate::service::RecordingService;
use crate::token::Tokens;

/// The callback route.
pub const CALLBACK_PATH: &str = "/openapi/v1/ivmAlarm/Live/vodCallBack";

/// How long to wait after a failed accept (e.g. no descriptor left) before the next.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Failed accepts of the HTTP and the gRPC front are each logged at most once a second.
static ACCEPT_FAILURES: [Throttle; 2] = [
    Throttle::new(std::time::Duration::from_secs(1)),
    Throttle::new(std::time::Duration::from_secs(1)),
];

/// The next connection on `listener`, once one of its port's `slots` is free (it holds
/// the slot until dropped). A failed accept, out of descriptors say, is retried after
/// `ACCEPT_BACKOFF` (100 ms) rather than in a tight loop; it is counted in
/// `recording_events_accept_failures_total{front}` and logged at most once a second (with
/// `left_out`, the failures not logged since). Cancel-safe.
pub async fn accept(
    listener: &TcpListener,
    slots: &Slots,
) -> (tokio::net::TcpStream, std::net::SocketAddr, Slot) {
    let front = slots.front();
    let free = slots.acquire().await;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer, free.take()),
            Err(e) => {
                metrics::counter!("recording_events_accept_failures_total", "front" => front)
                    .increment(1);
                let throttle = &ACCEPT_FAILURES[usize::from(front == "grpc")];
                if let Some(left_out) = throttle.admit(std::time::Instant::now()) {
                    tracing::warn!(front, error = %e, left_out, "accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// What the HTTP front needs.
pub struct HttpState {
    pub service: RecordingService,
    /// What `/readyz` reports.
    pub readiness: Arc<crate::readiness::Readiness>,
    pub auth: Arc<Authenticator>,
    /// The token endpoint's issuer, when clients are configured.
    pub tokens: Option<Arc<Tokens>>,
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body (a callback is about 1 KB).
    pub body_read_timeout: std::time::Duration,
    /// How long a client may take to send a request's headers; a new connection, its
    /// first bytes.
    pub header_read_timeout: std::time::Duration,
    /// HTTP/2 keep-alive ping interval and timeout (as on the gRPC front).
    pub keepalive: (std::time::Duration, std::time::Duration),
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` (over TLS when `tls` is given), at most as
/// many connections at once as `slots`, until `shutdown` resolves, then lets open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    slots: Slots,
    tls: Option<TlsAcceptor>,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that trickles its headers must not hold a connection forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.header_read_timeout);
    // HTTP/1 connections idle no longer than a request's headers may take; an HTTP/2
    // connection may idle, but one whose peer stopped answering pings is closed.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(state.keepalive.0)
        .keep_alive_timeout(state.keepalive.1);
    let opening = state.header_read_timeout;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            conn = accept(&listener, &slots) => conn,
            () = &mut shutdown => break,
        };
        // Replies are small: send them at once rather than waiting on Nagle.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move {
                let id = crate::request_id::of(req.headers());
                let mut response =
                    crate::request_id::scope(id.clone(), handle(&state, req, peer)).await;
                response.headers_mut().insert(crate::request_id::HEADER, id);
                Ok::<_, Infallible>(response)
            }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let stream = TokioIo::new(Opening::new(stream, slot, opening));
                    let conn = builder.serve_connection_with_upgrades(stream, service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(tls) => {
                    let Ok(stream) = crate::tls::handshake(&tls, stream, "http").await else {
                        return;
                    };
                    let stream = TokioIo::new(Opening::new(stream, slot, opening));
                    let conn = builder.serve_connection_with_upgrades(stream, service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn handle(
    state: &HttpState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    // The callback URL is typed into Huawei's console: one trailing slash too many must
    // not turn every callback into a 404.
    let path = match req.uri().path() {
        path if path.strip_suffix('/') == Some(CALLBACK_PATH) => CALLBACK_PATH,
        path => path,
    };
    let method = req.method().clone();
    let result = match path {
        CALLBACK_PATH if method == Method::POST => callback(state, req, peer).await,
        CALLBACK_PATH => Err(not_allowed(&method, "POST")),
        TOKEN_PATH if method == Method::POST => Ok(oauth::token(
            state.tokens.as_deref(),
            state.max_body_bytes,
            state.body_read_timeout,
            req,
        )
        .await),
        TOKEN_PATH => Err(not_allowed(&method, "POST")),
        "/healthz" if method == Method::GET || method == Method::HEAD => {
            Ok(envelope(StatusCode::OK, None, "ok"))
        }
        "/readyz" if method == Method::GET || method == Method::HEAD => state
            .readiness
            .check()
            .await
            .map(|()| envelope(StatusCode::OK, None, "ready"))
            .map_err(|e| (e, None)),
        "/metrics" if method == Method::GET || method == Method::HEAD => Ok(metrics_response()),
        "/healthz" | "/readyz" | "/metrics" => Err(not_allowed(&method, "GET, HEAD")),
        other => Err((
            Error::new(Code::NotFound, format!("path: no route for {other}")),
            None,
        )),
    };
    result.unwrap_or_else(|(error, allow)| error_response(&error, allow))
}

type Rejection = (Error, Option<&'static str>);

fn not_allowed(method: &Method, allow: &'static str) -> Rejection {
    let message = format!("method: {method} is not allowed here; use {allow}");
    (Error::new(Code::MethodNotAllowed, message), Some(allow))
}

async fn callback(
    state: &HttpState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let (request, raw) = read_callback(state, req).await.map_err(|e| {
        crate::service::count_rejected_callback(&e, Some(peer));
        (e, None)
    })?;
    state
        .service
        .vod_callback(request, Some(raw), Some(peer))
        .await
        .map_err(|e| (e, None))?;
    Ok(envelope(StatusCode::OK, None, "ok"))
}

/// The callback in `req`, parsed, and its body: checked for its type, size, deadline,
/// JSON and credentials, everything the service itself does not check.
async fn read_callback(
    state: &HttpState,
    req: Request<Incoming>,
) -> Result<(VodCallBackRequest, String), Error> {
    check_content_type(req.headers().get(header::CONTENT_TYPE))?;
    let gzipped = is_gzipped(req.headers().get(header::CONTENT_ENCODING))?;
    let authorization = req.headers().get(header::AUTHORIZATION);
    let credentials = state
        .auth
        .check_callback_headers(authorization.map(HeaderValue::as_bytes))?;
    let too_large = || {
        Error::new(
            Code::PayloadTooLarge,
            format!(
                "body: larger than the limit of {} bytes",
                state.max_body_bytes
            ),
        )
    };
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH)
        && len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > state.max_body_bytes)
    {
        return Err(too_large());
    }
    let collect = Limited::new(req.into_body(), state.max_body_bytes).collect();
    let body = tokio::time::timeout(state.body_read_timeout, collect)
        .await
        .map_err(|_| {
            Error::new(
                Code::RequestTimeout,
                format!(
                    "body: not received within {}",
                    humantime::format_duration(state.body_read_timeout)
                ),
            )
        })?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Error::invalid("body", "could not be read")
            }
        })?
        .to_bytes();
    let body = if gzipped {
        gunzip(&body, state.max_body_bytes)?
    } else {
        body
    };
    let request = crate::json::parse_callback(&body)?;
    if credentials == Callback::NeedsSignature {
        state.auth.check_signature(&request)?;
    }
    // JSON parsing succeeded, so the body is UTF-8; it is kept without a byte order mark.
    let raw = String::from_utf8(crate::json::without_bom(&body).to_vec())
        .map_err(|_| Error::invalid("body", "is not UTF-8"))?;
    Ok((request, raw))
}

/// JSON, with or without a charset; a missing Content-Type is read as JSON rather than
/// losing a callback.
fn check_content_type(value: Option<&HeaderValue>) -> Result<(), Error> {
    let Some(value) = value else { return Ok(()) };
    let mime = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime == "text/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(Error::new(
            Code::UnsupportedMediaType,
            format!("content-type: expected application/json, got `{mime}`"),
        ))
    }
}

/// Whether the body is gzip-compressed: `Content-Encoding` absent or `identity` is a plain
/// body, `gzip` (or `x-gzip`) a compressed one; any other coding is refused with 415.
fn is_gzipped(value: Option<&HeaderValue>) -> Result<bool, Error> {
    let Some(value) = value else {
        return Ok(false);
    };
    let coding = value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match coding.as_str() {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        _ => Err(Error::new(
            Code::UnsupportedMediaType,
            format!("content-encoding: `{coding}` is not supported; send gzip or no encoding"),
        )),
    }
}

/// The gzip-compressed `body`, decompressed: at most `limit` bytes, like a plain body.
fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, Error> {
    use std::io::Read;

    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let limit_plus_one = u64::try_from(limit).map_or(u64::MAX, |l| l.saturating_add(1));
    flate2::read::GzDecoder::new(body)
        .take(limit_plus_one)
        .read_to_end(&mut out)
        .map_err(|e| Error::invalid("body", format!("is not valid gzip ({e})")))?;
    if out.len() > limit {
        return Err(Error::new(
            Code::PayloadTooLarge,
            format!("body: larger than the limit of {limit} bytes once decompressed"),
        ));
    }
    Ok(Bytes::from(out))
}

#[derive(Serialize)]
struct Envelope<'a> {
    status: u8,
    message: &'a str,
    error: Option<&'a str>,
    data: Option<&'a str>,
    timestamp: String,
}

/// The envelope's local time with offset, e.g. `2026-11-28T20:04:05.123+0800`; the format
/// is parsed once.
static ENVELOPE_TIME: std::sync::LazyLock<Vec<chrono::format::Item<'static>>> =
    std::sync::LazyLock::new(|| {
        chrono::format::StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.3f%z")
            .parse_to_owned()
            .expect("a valid format")
    });

fn envelope(status: StatusCode, error: Option<(&str, &str)>, data: &str) -> Response<Full<Bytes>> {
    let body = Envelope {
        status: u8::from(error.is_some()),
        message: error.map_or("SUCCESS", |(_, m)| m),
        error: error.map(|(code, _)| code),
        data: if error.is_some() { None } else { Some(data) },
        timestamp: chrono::Local::now()
            .format_with_items(ENVELOPE_TIME.iter())
            .to_string(),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn metrics_response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn error_response(e: &Error, allow: Option<&'static str>) -> Response<Full<Bytes>> {
    e.log();
    let mut response = envelope(
        e.code().http_status(),
        Some((e.code().as_str(), e.message())),
        "",
    );
    if e.code() == Code::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if e.code().retry_soon() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
