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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The HTTP/2 connection preface's length (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

/// A connection whose first [`PREFACE_LEN`] bytes must arrive within a deadline. A first
/// byte other than `P` cannot start the HTTP/2 preface: HTTP/1, whose header deadline
/// hyper enforces from there, so the deadline is lifted at once.
pub struct Opening<I> {
    io: I,
    deadline: Option<Pin<Box<Sleep>>>,
    seen: usize,
}

impl<I> Opening<I> {
    /// `io`, which must send its first bytes within `limit` from now.
    pub fn new(io: I, limit: Duration) -> Self {
        Opening {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            seen: 0,
        }
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
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent no request in time",
                )))
            }
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

    async fn read_after(first: &[u8], wait: Duration) -> io::Result<usize> {
        let (mut client, server) = tokio::io::duplex(64);
        let mut opening = Opening::new(server, LIMIT);
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
    async fn after_the_preface_or_an_http1_byte_the_connection_may_idle() {
        // Still open after the deadline: the read waits (for more than 3 × LIMIT).
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(read_after(preface, LIMIT * 2).await.unwrap(), usize::MAX);
        assert_eq!(read_after(b"G", LIMIT * 2).await.unwrap(), usize::MAX);
    }
}
