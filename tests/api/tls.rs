//! TLS on both fronts (`--tls-cert`, `--tls-key`): real TLS clients, a self-signed
//! certificate made for the test.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use recording_events::config::Settings;
use recording_events::pb::v1::VodCallBackRequest;
use recording_events::pb::v1::recording_event_client::RecordingEventClient;
use recording_events::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{CALLBACK, TOKEN, authed, payload, payload_json, spawn_app_with};

/// A certificate for localhost and its key, written as PEM files in `dir`.
pub fn certificate(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = made.cert.pem();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// [`certificate`] valid until midnight UTC of `until` (year, month, day).
pub fn certificate_until(
    dir: &std::path::Path,
    name: &str,
    until: (i32, u8, u8),
) -> (PathBuf, PathBuf, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let cert_pem = params.self_signed(&key_pair).unwrap().pem();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, key_pair.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// GETs `path` over TLS, trusting only `cert_pem`; the body as text.
pub async fn get_over_tls(addr: std::net::SocketAddr, cert_pem: &str, path: &str) -> String {
    let mut sender = tls_sender(addr, cert_pem).await.unwrap();
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = sender.send_request(req).await.unwrap();
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn with_tls(cert: PathBuf, key: PathBuf) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.args.tls_cert = Some(cert);
        s.args.tls_key = Some(key);
    }
}

/// A TLS connection to `addr` as `localhost`, trusting only `cert_pem`, offering `alpn`;
/// `Err` when the handshake fails.
async fn tls_connect(
    addr: std::net::SocketAddr,
    cert_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP/1.1 connection over TLS to `addr`, trusting only `cert_pem`; `Err` when the
/// handshake fails.
async fn tls_sender(
    addr: std::net::SocketAddr,
    cert_pem: &str,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tls_connect(addr, cert_pem, &[]).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    Ok(sender)
}

/// POSTs the seed callback over TLS, trusting only `cert_pem`; `Err` when the handshake
/// fails.
pub async fn try_post_over_tls(
    addr: std::net::SocketAddr,
    cert_pem: &str,
) -> Result<(u16, serde_json::Value), std::io::Error> {
    let mut sender = tls_sender(addr, cert_pem).await?;
    let req = http::Request::post(CALLBACK)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(payload("seed_example.json"))))
        .unwrap();
    let reply = sender.send_request(req).await.unwrap();
    let status = reply.status().as_u16();
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap()))
}

/// [`try_post_over_tls`], whose handshake must succeed.
async fn post_over_tls(addr: std::net::SocketAddr, cert_pem: &str) -> (u16, serde_json::Value) {
    try_post_over_tls(addr, cert_pem)
        .await
        .expect("the TLS handshake succeeds")
}

#[tokio::test]
async fn both_fronts_serve_tls_with_the_given_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(certs.path(), "server");
    let app = spawn_app_with(with_tls(cert, key)).await;

    let (status, reply) = post_over_tls(app.http_addr, &cert_pem).await;
    assert_eq!(
        (status, reply["status"].as_i64()),
        (200, Some(0)),
        "{reply}"
    );

    let channel = Channel::from_shared(format!("https://localhost:{}", app.grpc_addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("a TLS gRPC channel connects");
    let mut grpc = RecordingEventClient::new(channel);
    let mut request: VodCallBackRequest =
        serde_json::from_value(payload_json("seed_example.json")).unwrap();
    request.asset_id = "asset-over-grpc-tls".into();
    let reply = grpc.vod_call_back(authed(request)).await.unwrap();
    assert!(!reply.get_ref().duplicate);

    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn with_tls_on_a_plain_text_request_gets_no_http_answer() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(certs.path(), "server");
    let app = spawn_app_with(with_tls(cert, key)).await;

    let mut tcp = tokio::net::TcpStream::connect(app.http_addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP must not be served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The server keeps serving TLS clients.
    let (status, _) = post_over_tls(app.http_addr, &cert_pem).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_refused_at_start() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, _, _) = certificate(certs.path(), "one");
    let (_, other_key, _) = certificate(certs.path(), "two");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let mut settings = Settings::for_tests(&url, TOKEN);
    with_tls(cert, other_key)(&mut settings);
    let error = Application::build(settings)
        .await
        .err()
        .expect("a mismatched key is refused");
    let message = format!("{error:#}");
    assert!(message.contains("--tls-key"), "{message}");

    let mut settings = Settings::for_tests(&url, TOKEN);
    with_tls(
        dir.path().join("missing.crt"),
        dir.path().join("missing.key"),
    )(&mut settings);
    let error = Application::build(settings)
        .await
        .err()
        .expect("missing files are refused");
    assert!(
        format!("{error:#}").contains("--tls-cert: cannot read"),
        "{error:#}"
    );
}

/// A CA (written to `dir/{name}-ca.crt`) and a client certificate it issued, as a tonic
/// identity.
pub fn client_ca(dir: &std::path::Path, name: &str) -> (PathBuf, Identity) {
    let ca = TestCa::new(dir, name);
    let client = ca.client(1);
    (ca.path, client)
}

/// A CA for client certificates: its certificate written to `dir/{name}-ca.crt`; it
/// issues clients and revocation lists.
pub struct TestCa {
    pub path: PathBuf,
    name: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(dir: &std::path::Path, name: &str) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&path, issuer.pem()).unwrap();
        TestCa {
            path,
            name: name.to_owned(),
            issuer,
        }
    }

    /// A client certificate with this serial number, as a tonic identity.
    pub fn client(&self, serial: u64) -> Identity {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, format!("{} client {serial}", self.name));
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.serial_number = Some(serial.into());
        let key = KeyPair::generate().unwrap();
        let cert = client.signed_by(&key, &self.issuer).unwrap();
        Identity::from_pem(cert.pem(), key.serialize_pem())
    }

    /// A revocation list (PEM) revoking these serial numbers, due for its next update on
    /// `next_update` (year, month, day).
    pub fn crl(&self, revoked: &[u64], next_update: (i32, u8, u8)) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            date_time_ymd,
        };
        let (year, month, day) = next_update;
        CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(year, month, day),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: serial.into(),
                    revocation_time: date_time_ymd(2020, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// The seed callback over gRPC with TLS on `port`, trusting only `server_pem`, presenting
/// `identity` when given; `Err` (as text) when the handshake or the call fails.
pub async fn try_grpc_over_tls(
    port: u16,
    server_pem: &str,
    identity: Option<Identity>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut request: VodCallBackRequest =
        serde_json::from_value(payload_json("seed_example.json")).unwrap();
    request.asset_id = format!("asset-{}", rand_suffix());
    RecordingEventClient::new(channel)
        .vod_call_back(authed(request))
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

/// Whether gRPC calls presenting `identity` are refused with the TLS alert `alert`: every
/// one of a few tries must fail, and at least one must show the alert (a client that is
/// still writing when the server closes may see a broken pipe instead).
pub async fn refused_with(
    port: u16,
    server_pem: &str,
    identity: Option<Identity>,
    alert: &str,
) -> bool {
    let mut seen = false;
    for _ in 0..5 {
        let outcome = try_grpc_over_tls(port, server_pem, identity.clone()).await;
        let Err(error) = outcome else {
            panic!("a call presenting {identity:?} must be refused");
        };
        seen |= error.contains(alert);
    }
    seen
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn with_a_client_ca_grpc_callers_need_a_certificate_it_issued() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, server_pem) = certificate(certs.path(), "server");
    let (ours, our_client) = client_ca(certs.path(), "ours");
    let (_, foreign_client) = client_ca(certs.path(), "foreign");
    let app = spawn_app_with(|s| {
        with_tls(cert, key)(s);
        s.args.tls_client_ca = Some(ours);
    })
    .await;
    let port = app.grpc_addr.port();

    let with_ours = try_grpc_over_tls(port, &server_pem, Some(our_client)).await;
    // The server's alerts: no certificate, then one from a CA it does not know.
    let without = refused_with(port, &server_pem, None, "CertificateRequired").await;
    let with_foreign = refused_with(port, &server_pem, Some(foreign_client), "UnknownCA").await;
    // Huawei's callbacks on the HTTP front are not asked for a certificate.
    let (http_status, _) = post_over_tls(app.http_addr, &server_pem).await;

    assert_eq!(with_ours, Ok(()));
    assert!(
        without,
        "no client certificate: refused with CertificateRequired"
    );
    assert!(
        with_foreign,
        "another CA's certificate: refused with UnknownCA"
    );
    assert_eq!(http_status, 200);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    // Each refusal is counted (the recorder is shared by the tests of this process, and
    // only this one fails gRPC handshakes: 5 tries without, 5 with a foreign certificate).
    let metrics = get_over_tls(app.http_addr, &server_pem, "/metrics").await;
    let failures: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"recording_events_tls_handshake_failures_total{front="grpc"} "#)
        })
        .expect("the handshake failure counter")
        .parse()
        .unwrap();
    assert!(failures >= 10.0, "{failures}");
}

#[tokio::test]
async fn a_client_ca_file_that_is_missing_or_holds_no_certificate_is_refused_at_start() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(certs.path(), "server");
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    for (ca, expected) in [
        (
            certs.path().join("missing.pem"),
            "--tls-client-ca: cannot read",
        ),
        (empty, "--tls-client-ca: no CERTIFICATE in"),
    ] {
        let mut settings = Settings::for_tests(&url, TOKEN);
        with_tls(cert.clone(), key.clone())(&mut settings);
        settings.args.tls_client_ca = Some(ca);
        let error = Application::build(settings)
            .await
            .err()
            .expect("a bad client CA file is refused");
        assert!(format!("{error:#}").contains(expected), "{error:#}");
    }
}

/// A CA file holding both CAs' certificates.
fn both_cas(dir: &std::path::Path, first: &TestCa, second: &TestCa) -> PathBuf {
    let path = dir.join("client-cas.pem");
    let pem = [&first.path, &second.path]
        .map(|p| std::fs::read_to_string(p).unwrap())
        .concat();
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn with_a_revocation_list_revoked_clients_and_clients_of_a_ca_without_one_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, server_pem) = certificate(certs.path(), "server");
    let ours = TestCa::new(certs.path(), "ours");
    let partner = TestCa::new(certs.path(), "partner");
    let crl = certs.path().join("ours.crl");
    std::fs::write(&crl, ours.crl(&[2], (2099, 1, 1))).unwrap();
    let cas = both_cas(certs.path(), &ours, &partner);
    let app = spawn_app_with(|s| {
        with_tls(cert, key)(s);
        s.args.tls_client_ca = Some(cas);
        s.args.tls_client_crl = Some(crl);
    })
    .await;
    let port = app.grpc_addr.port();

    let kept = try_grpc_over_tls(port, &server_pem, Some(ours.client(1))).await;
    let revoked = refused_with(
        port,
        &server_pem,
        Some(ours.client(2)),
        "CertificateRevoked",
    )
    .await;
    // The partner CA published no list here: its clients' status is unknown, so refused.
    let unknown = refused_with(port, &server_pem, Some(partner.client(1)), "UnknownCA").await;

    assert_eq!(kept, Ok(()), "a client the CA did not revoke is let in");
    assert!(revoked, "a revoked client: refused with CertificateRevoked");
    assert!(unknown, "a client of a CA without a list: refused");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    let metrics = get_over_tls(app.http_addr, &server_pem, "/metrics").await;
    let next_update = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("recording_events_tls_client_crl_next_update_timestamp_seconds ")
        })
        .expect("the next update gauge");
    // 2099-01-01T00:00:00Z
    assert_eq!(next_update.parse::<f64>().unwrap(), 4_070_908_800.0);
}

#[tokio::test]
async fn a_revocation_list_past_its_next_update_refuses_every_client_of_its_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, server_pem) = certificate(certs.path(), "server");
    let ours = TestCa::new(certs.path(), "ours");
    let crl = certs.path().join("ours.crl");
    std::fs::write(&crl, ours.crl(&[], (2021, 1, 1))).unwrap();
    let app = spawn_app_with(|s| {
        with_tls(cert, key)(s);
        s.args.tls_client_ca = Some(ours.path.clone());
        s.args.tls_client_crl = Some(crl);
    })
    .await;

    let refused = refused_with(
        app.grpc_addr.port(),
        &server_pem,
        Some(ours.client(1)),
        "UnknownCA",
    )
    .await;
    // Huawei's callbacks on the HTTP front do not depend on it.
    let (http_status, _) = post_over_tls(app.http_addr, &server_pem).await;

    assert!(refused, "an out-of-date list: the CA's clients are refused");
    assert_eq!(http_status, 200);
}

#[tokio::test]
async fn revocation_lists_that_cannot_be_used_are_refused_at_start() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(certs.path(), "server");
    let ours = TestCa::new(certs.path(), "ours");
    let foreign = TestCa::new(certs.path(), "foreign");
    let empty = certs.path().join("empty.crl");
    std::fs::write(&empty, "no lists here\n").unwrap();
    let foreign_crl = certs.path().join("foreign.crl");
    std::fs::write(&foreign_crl, foreign.crl(&[], (2099, 1, 1))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    for (ca, crl, expected) in [
        (
            Some(ours.path.clone()),
            certs.path().join("missing.crl"),
            "--tls-client-crl: cannot read".to_owned(),
        ),
        (
            Some(ours.path.clone()),
            empty,
            "--tls-client-crl: no X509 CRL in".to_owned(),
        ),
        (
            Some(ours.path.clone()),
            foreign_crl.clone(),
            "from `CN=foreign CA` is not from a CA of --tls-client-ca".to_owned(),
        ),
        (
            None,
            foreign_crl,
            "--tls-client-crl needs --tls-client-ca".to_owned(),
        ),
    ] {
        let mut settings = Settings::for_tests(&url, TOKEN);
        with_tls(cert.clone(), key.clone())(&mut settings);
        settings.args.tls_client_ca = ca;
        settings.args.tls_client_crl = Some(crl);
        let error = Application::build(settings)
            .await
            .err()
            .expect("an unusable revocation list is refused");
        assert!(format!("{error:#}").contains(&expected), "{error:#}");
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_tls_connections_that_sent_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(dir.path(), "server");
    let mut app = spawn_app_with(|s| {
        with_tls(cert, key)(s);
        s.args.header_read_timeout = std::time::Duration::from_secs(120);
    })
    .await;
    // A finished TLS handshake on the gRPC port (as HTTP/2), then nothing.
    let held = tls_connect(app.grpc_addr, &cert_pem, &[b"h2"])
        .await
        .expect("the TLS handshake succeeds");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), app.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited for a TLS connection that never sent a request (deadline 120 s)"
    );
    drop(held);
}
