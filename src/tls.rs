//! TLS for both fronts from one PEM certificate chain and key (`--tls-cert`,
//! `--tls-key`): rustls with ring, no system OpenSSL. With TLS on, both ports speak TLS
//! only; the HTTP front offers HTTP/2 and HTTP/1.1 by ALPN, the gRPC front HTTP/2. The
//! files are read again on SIGHUP ([`Tls::reload`]): new connections get the new
//! certificate, open ones keep theirs, and a bad pair leaves the current one in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS for both fronts, sharing one certificate that can be reloaded.
#[derive(Clone)]
pub struct Tls {
    certificate: Arc<Certificate>,
    /// For the HTTP front: h2 and http/1.1.
    pub http: TlsAcceptor,
    /// For the gRPC front: h2 only.
    pub grpc: TlsAcceptor,
}

/// The current certificate and the files it came from.
struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

// Required by rustls; never shows the key.
impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .expect("certificate lock poisoned")
                .clone(),
        )
    }
}

/// The Unix time the current leaf certificate expires, for alerting before it does.
const EXPIRY_METRIC: &str = "recording_events_tls_certificate_expiration_timestamp_seconds";

impl Tls {
    /// Reads and checks the certificate chain and its key.
    ///
    /// # Errors
    /// When a file cannot be read, holds no PEM certificate or key, or the key does not
    /// belong to the certificate; the message names the flag.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let pair = read_pair(cert, key)?;
        report_expiry(&pair);
        let certificate = Arc::new(Certificate {
            current: RwLock::new(Arc::new(pair)),
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
        });
        let acceptor = |alpn: &[&[u8]]| {
            let mut config =
                ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                    .with_protocol_versions(&[&version::TLS13, &version::TLS12])
                    .expect("ring supports TLS 1.2 and 1.3")
                    .with_no_client_auth()
                    .with_cert_resolver(certificate.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            TlsAcceptor::from(Arc::new(config))
        };
        Ok(Tls {
            http: acceptor(&[b"h2", b"http/1.1"]),
            grpc: acceptor(&[b"h2"]),
            certificate,
        })
    }

    /// Reads the files again; on success new connections get the new certificate.
    ///
    /// # Errors
    /// As [`Tls::load`]; the current certificate then stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let c = &self.certificate;
        let pair = read_pair(&c.cert_path, &c.key_path)?;
        report_expiry(&pair);
        *c.current.write().expect("certificate lock poisoned") = Arc::new(pair);
        Ok(())
    }

    /// TLS connections accepted on `listener`, handshakes done concurrently (each
    /// bounded by [`HANDSHAKE_TIMEOUT`]), for the gRPC server. Ends when the receiver is
    /// dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(64);
        let acceptor = self.grpc.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    conn = crate::http::accept(&listener, "grpc") => conn,
                    () = tx.closed() => return,
                };
                // Small request/response pairs: without TCP_NODELAY, Nagle plus delayed
                // ACKs add ~40 ms to a reply.
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match handshake(&acceptor, stream).await {
                        Ok(tls) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    }
                });
            }
        });
        rx
    }
}

/// The TLS handshake on `stream`, bounded by [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// When the handshake fails or times out.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out"))?
}

/// Sets the expiry gauge from the leaf certificate (left as it was if it cannot be
/// read; rustls accepted the certificate already).
fn report_expiry(pair: &CertifiedKey) {
    let Some(leaf) = pair.cert.first() else {
        return;
    };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, parsed)) => {
            let not_after = parsed.validity().not_after.timestamp();
            #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit in f64 exactly
            metrics::gauge!(EXPIRY_METRIC).set(not_after as f64);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the certificate's expiry"),
    }
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("--tls-cert: cannot read {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("--tls-key: cannot read {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert: {} is not PEM", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert: no CERTIFICATE in {}",
        cert.display()
    );
    // Whatever the parser would say, say nothing of the key's content.
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| anyhow::anyhow!("--tls-key: no PEM private key in {}", key.display()))?;
    CertifiedKey::from_der(chain, private, &ring::default_provider()).map_err(|e| {
        anyhow::anyhow!(
            "--tls-key: {} is not a usable key for the certificate of --tls-cert ({e})",
            key.display()
        )
    })
}
