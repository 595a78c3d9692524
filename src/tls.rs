//! TLS for both fronts from one PEM certificate chain and key (`--tls-cert`,
//! `--tls-key`): rustls with ring, no system OpenSSL. With TLS on, both ports speak TLS
//! only; the HTTP front offers HTTP/2 and HTTP/1.1 by ALPN, the gRPC front HTTP/2. With
//! `--tls-client-ca`, the gRPC front also requires each client to present a certificate
//! issued by one of those CAs (mutual TLS for internal callers; Huawei's callbacks on the
//! HTTP front are not asked for one), and with `--tls-client-crl` one those CAs have not
//! revoked. The files are read again on SIGHUP
//! ([`Tls::reload`]): new connections get the new certificate and CAs, open ones keep
//! theirs, and a file that does not load leaves the current ones in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};
use tokio_rustls::server::TlsStream;

use crate::opening::{Opening, Slots};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS for both fronts, sharing one certificate that can be reloaded.
#[derive(Clone)]
pub struct Tls {
    certificate: Arc<Certificate>,
    /// For the HTTP front: h2 and http/1.1.
    pub http: TlsAcceptor,
    /// For the gRPC front: h2 only, and the client CAs when given (swapped on reload).
    grpc: Arc<RwLock<TlsAcceptor>>,
    /// `--tls-client-ca` and `--tls-client-crl`: whom the gRPC front lets in.
    clients: Option<ClientFiles>,
}

/// The files of `--tls-client-ca` and `--tls-client-crl`.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    /// The CAs whose certificates gRPC clients must present.
    pub ca: PathBuf,
    /// The revocation lists of those CAs, when given.
    pub crl: Option<PathBuf>,
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
/// The Unix time the first of the `--tls-client-crl` lists in use is due to be replaced.
const CRL_NEXT_UPDATE_METRIC: &str =
    "recording_events_tls_client_crl_next_update_timestamp_seconds";

impl Tls {
    /// Reads and checks the certificate chain and its key.
    ///
    /// # Errors
    /// When a file cannot be read, holds no PEM certificate or key, the key does not
    /// belong to the certificate, or a revocation list is unusable or not from one of the
    /// client CAs; the message names the flag.
    pub fn load(cert: &Path, key: &Path, clients: Option<ClientFiles>) -> anyhow::Result<Tls> {
        let pair = read_pair(cert, key)?;
        let verifier = clients.as_ref().map(client_verifier).transpose()?;
        report_expiry(&pair);
        let certificate = Arc::new(Certificate {
            current: RwLock::new(Arc::new(pair)),
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
        });
        Ok(Tls {
            http: acceptor(&certificate, None, &[b"h2", b"http/1.1"]),
            grpc: Arc::new(RwLock::new(acceptor(&certificate, verifier, &[b"h2"]))),
            clients,
            certificate,
        })
    }

    /// Whether the gRPC front requires client certificates (`--tls-client-ca`).
    pub fn requires_client_certificates(&self) -> bool {
        self.clients.is_some()
    }

    /// Whether client certificates are also checked against revocation lists
    /// (`--tls-client-crl`).
    pub fn checks_revocation(&self) -> bool {
        self.clients.as_ref().is_some_and(|c| c.crl.is_some())
    }

    /// Reads the files again; when all of them load, new connections get the new
    /// certificate (and client CAs and revocation lists).
    ///
    /// # Errors
    /// As [`Tls::load`]; the current certificate and CAs then stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let c = &self.certificate;
        let pair = read_pair(&c.cert_path, &c.key_path)?;
        let verifier = self.clients.as_ref().map(client_verifier).transpose()?;
        report_expiry(&pair);
        *c.current.write().expect("certificate lock poisoned") = Arc::new(pair);
        if verifier.is_some() {
            *self.grpc.write().expect("acceptor lock poisoned") =
                acceptor(&self.certificate, verifier, &[b"h2"]);
        }
        Ok(())
    }

    /// TLS connections accepted on `listener` (at most `slots` open at once, handshakes
    /// included), handshakes done concurrently (each
    /// bounded by [`HANDSHAKE_TIMEOUT`]), for the gRPC server; each must then send the
    /// HTTP/2 preface within `opening` and before `stop` turns true. Ends when the
    /// receiver is dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
        slots: Slots,
        opening: Duration,
        stop: watch::Receiver<bool>,
    ) -> mpsc::Receiver<std::io::Result<Opening<TlsStream<TcpStream>>>> {
        let (tx, rx) = mpsc::channel(64);
        let acceptors = self.grpc.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _, slot) = tokio::select! {
                    conn = crate::http::accept(&listener, &slots) => conn,
                    () = tx.closed() => return,
                };
                // Small request/response pairs: without TCP_NODELAY, Nagle plus delayed
                // ACKs add ~40 ms to a reply.
                let _ = stream.set_nodelay(true);
                let acceptor = acceptors.read().expect("acceptor lock poisoned").clone();
                let tx = tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = handshake(&acceptor, stream, "grpc").await {
                        let _ = tx
                            .send(Ok(Opening::until(tls, slot, opening, Some(stop))))
                            .await;
                    }
                });
            }
        });
        rx
    }
}

/// A TLS server configuration offering `alpn`, with `certificate`, asking clients for a
/// certificate that `clients` accepts when given.
fn acceptor(
    certificate: &Arc<Certificate>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[&[u8]],
) -> TlsAcceptor {
    let builder = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// What the gRPC front asks of clients' certificates: issued by one of the CAs of
/// `--tls-client-ca` and, with `--tls-client-crl`, not revoked by it. Revocation is
/// checked as OpenSSL does by default: the client's own certificate, against a list from
/// its issuer that has not passed its next update; without such a list the client is
/// refused (its status is unknown).
fn client_verifier(files: &ClientFiles) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let (roots, subjects) = read_client_cas(&files.ca)?;
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(roots, Arc::new(ring::default_provider()));
    let mut next_update = None;
    if let Some(path) = &files.crl {
        let (crls, earliest) = read_client_crls(path, &subjects)?;
        next_update = Some(earliest);
        builder = builder
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|e| {
        let flag = if files.crl.is_some() {
            "--tls-client-ca or --tls-client-crl"
        } else {
            "--tls-client-ca"
        };
        anyhow::anyhow!("{flag}: not usable to check client certificates ({e})")
    })?;
    if let Some(next_update) = next_update {
        #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit in f64 exactly
        metrics::gauge!(CRL_NEXT_UPDATE_METRIC).set(next_update as f64);
    }
    Ok(verifier)
}

/// A client CA's subject: as DER (what a revocation list names as its issuer) and as text.
struct Subject {
    der: Vec<u8>,
    name: String,
}

/// The CA certificates of `--tls-client-ca` (PEM, one or more), with their subjects.
fn read_client_cas(path: &Path) -> anyhow::Result<(Arc<RootCertStore>, Vec<Subject>)> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--tls-client-ca: cannot read {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let mut subjects = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.with_context(|| format!("--tls-client-ca: {} is not PEM", path.display()))?;
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&cert) {
            let subject = parsed.subject();
            subjects.push(Subject {
                der: subject.as_raw().to_vec(),
                name: subject.to_string(),
            });
        }
        roots.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "--tls-client-ca: a certificate in {} is not a usable CA ({e})",
                path.display()
            )
        })?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "--tls-client-ca: no CERTIFICATE in {}",
        path.display()
    );
    Ok((Arc::new(roots), subjects))
}

/// The revocation lists of `--tls-client-crl` (PEM, one or more), each from one of the
/// client CAs (`subjects`), and the earliest of their next updates (Unix
/// time). Warns of a list already past it (every client of that CA is refused until a
/// newer one is loaded) and of a CA without a list (its clients are refused).
fn read_client_crls(
    path: &Path,
    subjects: &[Subject],
) -> anyhow::Result<(Vec<CertificateRevocationListDer<'static>>, i64)> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--tls-client-crl: cannot read {}", path.display()))?;
    let mut crls = Vec::new();
    let mut covered = vec![false; subjects.len()];
    let mut earliest = i64::MAX;
    for crl in CertificateRevocationListDer::pem_slice_iter(&pem) {
        let crl =
            crl.with_context(|| format!("--tls-client-crl: {} is not PEM", path.display()))?;
        let (_, parsed) = x509_parser::parse_x509_crl(&crl).map_err(|e| {
            anyhow::anyhow!(
                "--tls-client-crl: a list in {} is not a revocation list ({e})",
                path.display()
            )
        })?;
        let issuer = parsed.issuer();
        let Some(ca) = subjects
            .iter()
            .position(|s| s.der.as_slice() == issuer.as_raw())
        else {
            anyhow::bail!(
                "--tls-client-crl: the list in {} from `{issuer}` is not from a CA of \
                 --tls-client-ca",
                path.display()
            );
        };
        covered[ca] = true;
        let Some(next_update) = parsed.next_update() else {
            anyhow::bail!(
                "--tls-client-crl: the list in {} from `{issuer}` has no next update",
                path.display()
            );
        };
        let next_update = next_update.timestamp();
        if next_update <= chrono::Utc::now().timestamp() {
            tracing::warn!(
                issuer = %issuer,
                next_update = %next_update_text(next_update),
                "--tls-client-crl: this revocation list is out of date; the gRPC front \
                 refuses that CA's clients until a newer one is loaded (SIGHUP)"
            );
        }
        earliest = earliest.min(next_update);
        crls.push(crl);
    }
    anyhow::ensure!(
        !crls.is_empty(),
        "--tls-client-crl: no X509 CRL in {}",
        path.display()
    );
    for (subject, covered) in subjects.iter().zip(covered) {
        if !covered {
            tracing::warn!(
                ca = %subject.name,
                "--tls-client-crl: no revocation list from this CA; the gRPC front refuses \
                 the clients it issued (their revocation status is unknown)"
            );
        }
    }
    Ok((crls, earliest))
}

/// A Unix time as RFC 3339, for logs.
fn next_update_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

/// The TLS handshake on `stream` (a connection to `front`: `http` or `grpc`), bounded by
/// [`HANDSHAKE_TIMEOUT`]. A failure is logged at debug level with the peer and counted in
/// `recording_events_tls_handshake_failures_total{front}`.
///
/// # Errors
/// When the handshake fails or times out.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    front: &'static str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |p| p.to_string());
    let accept = acceptor.accept(stream).into_fallible();
    let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(tls)) => return Ok(tls),
        Ok(Err((error, tcp))) => {
            tokio::spawn(close_after_alert(tcp));
            error
        }
        Err(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out"),
    };
    tracing::debug!(%peer, front, error = %error, "tls handshake failed");
    metrics::counter!("recording_events_tls_handshake_failures_total", "front" => front)
        .increment(1);
    Err(error)
}

/// Closes a connection whose handshake failed once rustls has written its alert (e.g.
/// `UnknownCA` for a client certificate from another CA): our side first, then what the
/// client already sent is read and dropped for up to a second. Dropping the socket with
/// unread bytes would send a reset, which can discard the alert before the client reads
/// it, and the client would see only "broken pipe".
async fn close_after_alert(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
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
