//! TLS for both fronts from one PEM certificate chain and key (`--tls-cert`,
//! `--tls-key`): rustls with ring, no system OpenSSL. With TLS on, both ports speak TLS
//! only; the HTTP front offers HTTP/2 and HTTP/1.1 by ALPN, the gRPC front HTTP/2.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Identity, ServerTlsConfig};

/// The server side of TLS, for each front. (No `Debug`: it holds the private key.)
#[derive(Clone)]
pub struct Tls {
    /// Wraps the HTTP front's connections.
    pub http: TlsAcceptor,
    /// Given to the gRPC server.
    pub grpc: ServerTlsConfig,
}

impl Tls {
    /// Reads and checks the certificate chain and its key.
    ///
    /// # Errors
    /// When a file cannot be read, holds no PEM certificate or key, or the key does not
    /// belong to the certificate; the message names the flag.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let cert_pem = std::fs::read(cert)
            .with_context(|| format!("--tls-cert: cannot read {}", cert.display()))?;
        let key_pem = std::fs::read(key)
            .with_context(|| format!("--tls-key: cannot read {}", key.display()))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--tls-cert: {} is not PEM", cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "--tls-cert: no CERTIFICATE in {}",
            cert.display()
        );
        // The error would not show the key, but say nothing of its content anyway.
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| anyhow::anyhow!("--tls-key: no PEM private key in {}", key.display()))?;
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .context("--tls-key: the key does not fit the certificate of --tls-cert")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            http: TlsAcceptor::from(Arc::new(config)),
            grpc: ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)),
        })
    }
}
