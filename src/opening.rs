//! A deadline for a new connection's first bytes, on both fronts.
//!
//! hyper bounds how long an HTTP/1 client takes to send its request headers, but only
//! once it knows the connection is HTTP/1: before that, the HTTP front reads the first
//! bytes to tell HTTP/1 from the HTTP/2 preface, and the gRPC front waits for the preface,
//! both without a limit. A client that connects and sends nothing would hold its
//! connection (and a descriptor) for ever; enough of them and no callback gets in.
//! [`Opening`] fails the reads of a connection that has not sent its first
//! [`PREFACE_LEN`] bytes within the deadline, which closes it; after those bytes it is
//! transparent (an idle HTTP/2 connection, a quiet WatchEvents stream, stays open).
//!
//! Each connection also holds a [`Slot`] of its port for as long as it lives: at most
//! `--max-connections` are open on a port at once (more wait in the kernel's accept
//! queue), counted in `recording_events_connections{front}`.
//!
//! The gRPC front's connections also end their opening when shutdown starts
//! ([`Opening::until`]): the HTTP/2 server's graceful shutdown waits for a connection
//! still in its handshake, which would otherwise hold the stop for the whole deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::Throttle;

/// The HTTP/2 connection preface's length (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

/// A connection whose first [`PREFACE_LEN`] bytes must arrive within a deadline. A first
/// byte other than `P` cannot start the HTTP/2 preface: HTTP/1, whose header deadline
/// hyper enforces from there, so the deadline is lifted at once.
pub struct Opening<I> {
    io: I,
    deadline: Option<Pin<Box<dyn Future<Output = &'static str> + Send>>>,
    seen: usize,
    _slot: Slot,
}

impl<I> Opening<I> {
    /// `io`, holding `slot` of its port, which must send its first bytes within `limit`
    /// from now.
    pub fn new(io: I, slot: Slot, limit: Duration) -> Self {
        Self::until(io, slot, limit, None)
    }

    /// [`Opening::new`], and before `stop` turns true (if given): a connection still
    /// opening when shutdown starts is closed.
    pub fn until(io: I, slot: Slot, limit: Duration, stop: Option<watch::Receiver<bool>>) -> Self {
        let deadline = async move {
            let stopped = async {
                let stopping = match stop {
                    Some(mut stop) => stop.wait_for(|stop| *stop).await.is_ok(),
                    None => false,
                };
                if !stopping {
                    // No shutdown signal, or its sender gone without one: only the limit.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(limit) => "the connection sent no request in time",
                () = stopped => "the server is shutting down",
            }
        };
        Opening {
            io,
            deadline: Some(Box::pin(deadline)),
            seen: 0,
            _slot: slot,
        }
    }
}

/// The connections a port may have open at once.
#[derive(Clone)]
pub struct Slots {
    front: &'static str,
    max: usize,
    free: Arc<Semaphore>,
}

/// Waits for a free slot are logged at most once a minute per port.
static FULL: [Throttle; 2] = [
    Throttle::new(Duration::from_secs(60)),
    Throttle::new(Duration::from_secs(60)),
];

impl Slots {
    /// `max` (≥ 1) slots for the port of `front` (`http` or `grpc`).
    pub fn new(front: &'static str, max: usize) -> Self {
        // Shown at 0 before the first connection, so dashboards have the series.
        metrics::gauge!("recording_events_connections", "front" => front).set(0.0);
        Slots {
            front,
            max,
            free: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// The port's name in logs and metrics.
    pub fn front(&self) -> &'static str {
        self.front
    }

    /// A free slot, once one is (cancel-safe), to take up with [`Free::take`] when a
    /// connection is accepted. While none is, new connections are not accepted: they
    /// wait in the kernel's queue, and the wait is logged.
    pub async fn acquire(&self) -> Free {
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics::counter!("recording_events_connection_limit_waits_total", "front" => self.front)
                    .increment(1);
                let throttle = &FULL[usize::from(self.front == "grpc")];
                if let Some(left_out) = throttle.admit(std::time::Instant::now()) {
                    tracing::warn!(
                        front = self.front,
                        max = self.max,
                        left_out,
                        "connection limit reached (--max-connections): new connections wait"
                    );
                }
                self.free
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        Free {
            front: self.front,
            permit,
        }
    }
}

/// A free slot of a port, not yet taken by a connection.
pub struct Free {
    front: &'static str,
    permit: OwnedSemaphorePermit,
}

impl Free {
    /// The slot, taken by a connection just accepted (counted from now).
    pub fn take(self) -> Slot {
        let open = metrics::gauge!("recording_events_connections", "front" => self.front);
        open.increment(1.0);
        Slot {
            open,
            _permit: self.permit,
        }
    }
}

/// One open connection of a port, counted in `recording_events_connections{front}`; its
/// slot is free again when this is dropped.
pub struct Slot {
    open: metrics::Gauge,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Opening<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                let filled = &buf.filled()[before..];
                if this.seen == 0 && filled.first().is_some_and(|&b| b != b'P') {
                    this.deadline = None;
                }
                this.seen += filled.len();
                if this.seen >= PREFACE_LEN {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(reason) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Opening<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<I: tonic::transport::server::Connected> tonic::transport::server::Connected for Opening<I> {
    type ConnectInfo = I::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(100);

    async fn slot() -> Slot {
        Slots::new("test", 8).acquire().await.take()
    }

    #[tokio::test]
    async fn a_port_has_at_most_its_slots_and_a_closed_connection_frees_one() {
        let slots = Slots::new("test", 2);
        let first = slots.acquire().await;
        let _second = slots.acquire().await;
        let third = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third waits while two are open");
        drop(first);
        let _third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("a freed slot is taken")
            .unwrap();
    }

    async fn read_after(first: &[u8], wait: Duration) -> io::Result<usize> {
        let (mut client, server) = tokio::io::duplex(64);
        let mut opening = Opening::new(server, slot().await, LIMIT);
        client.write_all(first).await?;
        let mut buf = [0u8; 64];
        if !first.is_empty() {
            assert_eq!(opening.read(&mut buf).await?, first.len());
        }
        tokio::time::sleep(wait).await;
        let n = tokio::time::timeout(LIMIT * 3, opening.read(&mut buf))
            .await
            .unwrap_or(Ok(usize::MAX))?;
        drop(client);
        Ok(n)
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_sent_in_time_fails_the_read() {
        let error = read_after(b"", Duration::ZERO).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_of_the_http2_preface_is_not_enough() {
        let error = read_after(b"PRI * HTTP/2.0\r\n", Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_an_opening_but_not_an_opened_connection() {
        let (stop_tx, stop) = watch::channel(false);
        let (_silent, server) = tokio::io::duplex(64);
        let mut opening = Opening::until(
            server,
            slot().await,
            Duration::from_secs(3600),
            Some(stop.clone()),
        );
        let (mut client, server) = tokio::io::duplex(64);
        let mut opened =
            Opening::until(server, slot().await, Duration::from_secs(3600), Some(stop));
        client.write_all(b"G").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(opened.read(&mut buf).await.unwrap(), 1);

        let waiting = tokio::spawn(async move { opening.read(&mut [0u8; 8]).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "still waiting before shutdown");
        stop_tx.send(true).unwrap();
        let error = waiting.await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "the server is shutting down");
        // The opened connection still reads (times out here: nothing more was sent).
        let idle = tokio::time::timeout(LIMIT, opened.read(&mut buf)).await;
        assert!(
            idle.is_err(),
            "an opened connection is not ended by shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_preface_or_an_http1_byte_the_connection_may_idle() {
        // Still open after the deadline: the read waits (for more than 3 × LIMIT).
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(read_after(preface, LIMIT * 2).await.unwrap(), usize::MAX);
        assert_eq!(read_after(b"G", LIMIT * 2).await.unwrap(), usize::MAX);
    }
}
