//! Request ids, on both fronts: every answer carries `x-request-id` — the caller's own
//! when it sent a usable one, else a new one — and the log lines the service writes about
//! that request name it (`request_id=`), so a caller that reports a failed call with its id
//! leads an operator to the line that says why.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header, in requests, responses and gRPC metadata.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The longest caller's id taken; a longer one is replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// The caller's id from `headers` when usable (1 to 128 characters of letters, digits and
/// `-_.:/+=@~`: nothing that could forge a log line or field), else a new one.
pub fn of(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&HEADER)
        .filter(|id| usable(id.as_bytes()))
        .cloned()
        .unwrap_or_else(new)
}

fn usable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
}

/// A new id: 128 random bits in hex.
pub fn new() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

/// Runs `work` as the handling of the request `id`.
pub async fn scope<F: Future>(id: HeaderValue, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// Runs `work` as the handling of the request `id` (when there is one), synchronously: for
/// what runs outside the request's own task, such as a response body's end.
pub fn sync_scope<R>(id: Option<HeaderValue>, work: impl FnOnce() -> R) -> R {
    match id {
        Some(id) => CURRENT.sync_scope(id, work),
        None => work(),
    }
}

/// The id of the request being handled (`None` outside a request).
pub fn current_header() -> Option<HeaderValue> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The id of the request being handled, for a log line (`None` outside a request).
pub fn current() -> Option<String> {
    current_header().and_then(|id| id.to_str().map(str::to_owned).ok())
}

/// The layer for `tonic::transport::Server::builder().layer(..)`; the first layer added,
/// so that what the others log is within the request.
#[derive(Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds { inner }
    }
}

/// Gives each call an id (see the module), its response headers the id.
#[derive(Clone)]
pub struct RequestIds<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RequestIds<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let id = of(req.headers());
        // The token check runs in `call` itself, before any future.
        let responding = CURRENT.sync_scope(id.clone(), || self.inner.call(req));
        Box::pin(CURRENT.scope(id.clone(), async move {
            let mut response = responding.await?;
            response.headers_mut().insert(HEADER, id);
            Ok(response)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_it_cannot_forge_a_log_line() {
        let with = |id: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(&HEADER, HeaderValue::from_str(id).unwrap());
            of(&headers)
        };
        assert_eq!(with("req-42_a.b:c/d+e=f@g~h"), "req-42_a.b:c/d+e=f@g~h");
        for forged in [
            "",
            "two words",
            "a\"quote",
            "tab\there",
            &"x".repeat(MAX_LEN + 1),
        ] {
            let given = with(forged);
            assert_ne!(given, forged);
            assert_eq!(given.len(), 32, "{given:?}");
        }
        assert_eq!(with(&"x".repeat(MAX_LEN)).len(), MAX_LEN);
        let fresh = of(&HeaderMap::new());
        assert!(
            fresh
                .to_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert_ne!(fresh, of(&HeaderMap::new()));
    }
}
