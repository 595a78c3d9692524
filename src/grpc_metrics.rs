//! Per-RPC metrics of the gRPC port, as gRPC users expect them from a server: how many
//! calls each method handled, by status code, and how long they took.
//!
//! - `recording_events_grpc_handled_total{method, code}`: calls finished, by method
//!   (`VodCallBack`, `FindRecordings`, …, `grpc.health.v1.Health/Check`, reflection) and
//!   by gRPC status code (`OK`, `InvalidArgument`, `Unauthenticated`, …; `Cancelled` when
//!   the client went away before the end);
//! - `recording_events_grpc_handling_seconds{method}`: from the request to the end of its
//!   response (for `WatchEvents`, how long each stream stayed open).
//!
//! The code is read where gRPC puts it: in the response headers for an error answered at
//! once, else in the trailers after the last message. Paths not served here are counted as
//! `other`, so a scan of random paths cannot add label values without bound.
//!
//! It also sees that every `VodCallBack` call refused is counted in
//! `recording_events_callbacks_total`, as the HTTP front's are: the token check and the
//! service count what they refuse, and this layer, at the call's end, what tonic refused
//! before either saw it (a message over the size limit, or one it could not decode).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// The methods served, as `method` label values, by their request path.
const METHODS: &[(&str, &str)] = &[
    (crate::grpc::VOD_CALLBACK_PATH, "VodCallBack"),
    (
        "/isdp.recording.v1.RecordingEvent/GetRecording",
        "GetRecording",
    ),
    (
        "/isdp.recording.v1.RecordingEvent/ListRecordings",
        "ListRecordings",
    ),
    (
        "/isdp.recording.v1.RecordingEvent/FindRecordings",
        "FindRecordings",
    ),
    (
        "/isdp.recording.v1.RecordingEvent/WatchEvents",
        "WatchEvents",
    ),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Check",
    ),
    (
        "/grpc.health.v1.Health/Watch",
        "grpc.health.v1.Health/Watch",
    ),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ),
];

fn method_label(path: &str) -> &'static str {
    METHODS
        .iter()
        .find(|(known, _)| *known == path)
        .map_or("other", |(_, label)| label)
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The `grpc-status` in `headers`, if any.
fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.parse().ok()?))
}

/// In the extensions of a `VodCallBack` request: its sender's address, and whether the
/// call is counted in `recording_events_callbacks_total` yet (by the token check or by
/// the service).
#[derive(Clone)]
pub struct CallbackCall {
    counted: Arc<AtomicBool>,
    peer: Option<SocketAddr>,
    request_id: Option<http::HeaderValue>,
}

impl CallbackCall {
    /// For a request whose connection's details tonic put in `extensions`.
    fn new(extensions: &http::Extensions) -> Self {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let peer = extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|tls| tls.get_ref().remote_addr())
            });
        CallbackCall {
            counted: Arc::default(),
            peer,
            request_id: crate::request_id::current_header(),
        }
    }

    /// The call is counted: this layer must not count it again.
    pub fn counted(&self) {
        self.counted.store(true, Ordering::Relaxed);
    }

    fn is_counted(&self) -> bool {
        self.counted.load(Ordering::Relaxed)
    }

    /// The sender's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// A callback that tonic answered with `status` before the service saw it, as the HTTP
/// front names the same faults: too large, or not readable. `None` for a call that the
/// client left (nothing was refused).
fn refused_by_tonic(status: &tonic::Status) -> Option<crate::error::Error> {
    use crate::error::{Code as Our, Error};
    let code = match status.code() {
        Code::Ok | Code::Cancelled => return None,
        // Over --max-body-bytes as sent (OutOfRange) or once decompressed.
        Code::OutOfRange | Code::ResourceExhausted => Our::PayloadTooLarge,
        // A message that is not the request type (tonic says Internal), or compressed in
        // a way not accepted (Unimplemented).
        Code::Internal | Code::InvalidArgument | Code::Unimplemented => Our::InvalidArgument,
        Code::DeadlineExceeded => Our::DeadlineExceeded,
        Code::Unavailable => Our::Unavailable,
        _ => Our::Internal,
    };
    Some(Error::new(code, format!("message: {}", status.message())))
}

/// The layer for `tonic::transport::Server::builder().layer(..)`.
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// Counts and times every call to the service it wraps.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(req.uri().path());
        let callback = (req.uri().path() == crate::grpc::VOD_CALLBACK_PATH).then(|| {
            let call = CallbackCall::new(req.extensions());
            req.extensions_mut().insert(call.clone());
            call
        });
        let started = Instant::now();
        let responding = self.inner.call(req);
        Box::pin(async move {
            let response = responding.await?;
            let at_once = status_in(response.headers());
            if let Some(callback) = &callback
                && at_once.is_some_and(|code| code != Code::Ok)
            {
                count_if_refused_by_tonic(callback, response.headers());
            }
            Ok(response.map(|body| Observed {
                body,
                call: Some(Call {
                    method,
                    started,
                    at_once,
                    callback,
                }),
            }))
        })
    }
}

/// Counts a callback refused in `headers` (the response's, or its trailers') unless the
/// token check or the service counted it.
fn count_if_refused_by_tonic(callback: &CallbackCall, headers: &http::HeaderMap) {
    if callback.is_counted() {
        return;
    }
    if let Some(error) = tonic::Status::from_header_map(headers)
        .as_ref()
        .and_then(refused_by_tonic)
    {
        callback.counted();
        // Perhaps at the body's end, outside the call's task: within its request id.
        crate::request_id::sync_scope(callback.request_id.clone(), || {
            crate::service::count_rejected_callback(&error, callback.peer());
        });
    }
}

/// A call whose end is not yet counted.
struct Call {
    method: &'static str,
    started: Instant,
    /// The status sent in the response headers (an error answered at once).
    at_once: Option<Code>,
    /// Set for `VodCallBack` calls.
    callback: Option<CallbackCall>,
}

impl Call {
    fn finish(self, code: Code) {
        metrics::counter!(
            "recording_events_grpc_handled_total",
            "method" => self.method,
            "code" => code_label(code),
        )
        .increment(1);
        metrics::histogram!("recording_events_grpc_handling_seconds", "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// A response body that counts its call when its status is known: at its trailers, at
/// its end, or when dropped before either (the client went away: `Cancelled`, unless the
/// headers already carried the status).
pub struct Observed<B> {
    body: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(trailers) = frame.trailers_ref()
            && let Some(callback) = self.call.as_ref().and_then(|c| c.callback.as_ref())
            && status_in(trailers).is_some_and(|code| code != Code::Ok)
        {
            count_if_refused_by_tonic(callback, trailers);
        }
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|t| status_in(t).unwrap_or(Code::Ok)),
            Some(Err(_)) => Some(Code::Unknown),
            None => Some(Code::Ok),
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            let code = call.at_once.unwrap_or(code);
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            let code = call.at_once.unwrap_or(Code::Cancelled);
            call.finish(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/isdp.recording.v1.RecordingEvent/FindRecordings"),
            "FindRecordings"
        );
        assert_eq!(method_label("/x.Y/Z"), "other");
        assert_eq!(
            method_label("/isdp.recording.v1.RecordingEvent/Nope"),
            "other"
        );
    }
}
