//! A cap, over all connections, on the gRPC streams that need no token: health `Watch`
//! and server reflection. A client may hold each open as long as it likes, and HTTP/2's
//! per-connection limit (`--max-concurrent-streams`) times the connections
//! (`--max-connections`) is millions of streams: enough memory for an unauthenticated
//! client to take the service down. Past the cap such a call gets RESOURCE_EXHAUSTED at
//! once; a stream that ends frees its place. Health `Check` (what probes call) is not
//! capped, nor is anything that needs a token (`WatchEvents` has `--max-watchers`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Code, Error};

/// The paths capped: the long-lived calls open without a token.
const CAPPED: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The layer for `tonic::transport::Server::builder().layer(..)`, innermost (it answers
/// with tonic's body type).
#[derive(Clone)]
pub struct OpenStreamsLayer {
    open: Arc<Semaphore>,
    max: usize,
}

impl OpenStreamsLayer {
    /// At most `max` capped calls open at once.
    pub fn new(max: usize) -> Self {
        OpenStreamsLayer {
            open: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> tower::Layer<S> for OpenStreamsLayer {
    type Service = OpenStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OpenStreams {
            inner,
            cap: self.clone(),
        }
    }
}

/// See [`OpenStreamsLayer`].
#[derive(Clone)]
pub struct OpenStreams<S> {
    inner: S,
    cap: OpenStreamsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for OpenStreams<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    /// Uncapped calls (every `VodCallBack`) go through as they are, not boxed.
    type Future = Either<S::Future, BoxFuture<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if !CAPPED.contains(&req.uri().path()) {
            return Either::Left(self.inner.call(req));
        }
        let Ok(permit) = self.cap.open.clone().try_acquire_owned() else {
            let refused = Error::new(
                Code::ResourceExhausted,
                format!(
                    "streams: {} health Watch and reflection streams are open, the most this \
                     server takes (--max-watchers); retry later",
                    self.cap.max
                ),
            );
            let status: tonic::Status = refused.into();
            return Either::Right(Box::pin(std::future::ready(Ok(status.into_http()))));
        };
        let responding = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let response = responding.await?;
            // The place is held for as long as the response streams.
            Ok(response.map(|body| {
                tonic::body::Body::new(Holding {
                    body,
                    _permit: permit,
                })
            }))
        }))
    }
}

/// A response body that holds a place under the cap until it is dropped.
struct Holding {
    body: tonic::body::Body,
    /// Held, never read: dropping it frees the place.
    _permit: OwnedSemaphorePermit,
}

impl Body for Holding {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
