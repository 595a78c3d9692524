//! A TCP proxy between the service and the test PostgreSQL, to make the database hold
//! its bytes, go away, or go silent, and come back.

use std::net::SocketAddr;

use recording_events::config::Settings;

use crate::helpers::postgres_url;

/// What a [`DbProxy`] does with the bytes between the service and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passing {
    /// Passed on.
    Through,
    /// Kept, connections left open: a database host that drops packets.
    Held,
    /// Every connection closed, new ones accepted and left waiting: a database that went
    /// away (a failover) behind an address that still accepts.
    Cut,
    /// Bytes dropped, for good, on every connection open now or opened until it passes
    /// again: a host that acknowledges packets but never answers (a dead database behind
    /// a load balancer).
    Silent,
}

/// A TCP proxy to the test PostgreSQL, to make the database unreachable and back.
pub struct DbProxy {
    addr: SocketAddr,
    target: String,
    passing: tokio::sync::watch::Sender<Passing>,
}

impl DbProxy {
    /// A proxy to the database of [`postgres_url`], passing bytes through.
    pub async fn start() -> DbProxy {
        let direct = postgres_url();
        // host:port, between the user (if any) and the database name.
        let after_scheme = direct.split_once("://").unwrap().1;
        let host = after_scheme
            .rsplit_once('@')
            .map_or(after_scheme, |(_, h)| h);
        let target = host.split(['/', '?']).next().unwrap().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (passing, gate) = tokio::sync::watch::channel(Passing::Through);
        let to = target.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (mut gate, to) = (gate.clone(), to.clone());
                if *gate.borrow() == Passing::Silent {
                    let (from, to) = client.into_split();
                    tokio::spawn(swallow(from, to));
                    continue;
                }
                tokio::spawn(async move {
                    // A connection opened while not passing waits, open, until it is.
                    if gate.wait_for(|p| *p == Passing::Through).await.is_err() {
                        return;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, gate.clone()));
                    tokio::spawn(pump(server_read, client_write, gate));
                });
            }
        });
        DbProxy {
            addr,
            target,
            passing,
        }
    }

    /// Points the settings' PostgreSQL URL at the proxy.
    pub fn route(&self, settings: &mut Settings) {
        let url =
            settings
                .args
                .database_url
                .expose()
                .replacen(&self.target, &self.addr.to_string(), 1);
        settings.args.database_url = url.parse().unwrap();
    }

    /// From now on, bytes are `passing`.
    pub fn set(&self, passing: Passing) {
        self.passing.send_replace(passing);
    }
}

/// Copies `from` to `to` as the gate says: held bytes wait, a cut ends the connection.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<Passing>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => Some(read),
            _ = gate.wait_for(|p| matches!(p, Passing::Cut | Passing::Silent)) => None,
        };
        let Some(read) = read else {
            if *gate.borrow() == Passing::Silent {
                return swallow(from, to).await;
            }
            return;
        };
        let n = match read {
            Ok(0) | Err(_) => {
                // A close is held like the bytes: a host cut off hears of nothing.
                let _ = gate.wait_for(|p| *p != Passing::Held).await;
                return;
            }
            Ok(n) => n,
        };
        match gate.wait_for(|p| *p != Passing::Held).await.map(|p| *p) {
            Ok(Passing::Through) => {}
            Ok(Passing::Silent) => return swallow(from, to).await,
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Reads and drops what `from` sends until it closes, keeping `to` open meanwhile: its
/// peer hears nothing, not even a close.
async fn swallow(mut from: tokio::net::tcp::OwnedReadHalf, to: tokio::net::tcp::OwnedWriteHalf) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(from.read(&mut buf).await, Ok(n) if n > 0) {}
    drop(to);
}
