//! SIGHUP reloads the TLS certificate, the client CA and the revocation list; without
//! TLS it changes nothing and never ends the service.

use super::*;

#[tokio::test]
async fn sighup_reloads_the_tls_certificate_and_keeps_it_when_the_new_one_is_bad() {
    use crate::tls::{certificate_until, get_over_tls, try_post_over_tls};
    const EXPIRY: &str = "recording_events_tls_certificate_expiration_timestamp_seconds";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, first_pem) = certificate_until(dir.path(), "server", (2031, 5, 1));
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let addr: std::net::SocketAddr = started.http.parse().unwrap();
    assert_eq!(try_post_over_tls(addr, &first_pem).await.unwrap().0, 200);
    let metrics = get_over_tls(addr, &first_pem, "/metrics").await;
    assert!(
        metrics.contains(&format!("{EXPIRY} 1935360000")),
        "the expiry of the first certificate (2031-05-01): {metrics}"
    );

    // A new pair in the same files, then SIGHUP: new connections get it.
    let (new_cert, new_key, second_pem) = certificate_until(dir.path(), "next", (2032, 6, 1));
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    hangup(&started);
    let mut reloaded = false;
    for _ in 0..100 {
        if try_post_over_tls(addr, &second_pem).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    assert!(
        try_post_over_tls(addr, &first_pem).await.is_err(),
        "the old certificate is no longer served"
    );

    // A broken key: the reload is refused and the current certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    hangup(&started);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(try_post_over_tls(addr, &second_pem).await.unwrap().0, 200);
    let metrics = get_over_tls(addr, &second_pem, "/metrics").await;
    assert!(
        metrics.contains(&format!("{EXPIRY} 1969660800")),
        "the expiry of the certificate in use (2032-06-01): {metrics}"
    );
    let (_, stderr) = sigterm_and_wait(started);
    assert!(stderr.contains("TLS certificate reloaded"), "{stderr}");
    assert!(stderr.contains("TLS certificate not reloaded"), "{stderr}");
    assert!(
        stderr.contains("--tls-key"),
        "the refusal names the flag: {stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_client_ca() {
    use crate::tls::{certificate, client_ca, refused_with, try_grpc_over_tls};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, server_pem) = certificate(dir.path(), "server");
    let (ca, first_client) = client_ca(dir.path(), "first");
    let (next_ca, next_client) = client_ca(dir.path(), "next");
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", ca.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let port = started.grpc.parse::<std::net::SocketAddr>().unwrap().port();
    assert_eq!(
        try_grpc_over_tls(port, &server_pem, Some(first_client.clone())).await,
        Ok(())
    );

    // The next CA in the same file, then SIGHUP: new connections are checked against it.
    std::fs::rename(&next_ca, &ca).unwrap();
    hangup(&started);
    let mut reloaded = false;
    for _ in 0..100 {
        if try_grpc_over_tls(port, &server_pem, Some(next_client.clone()))
            .await
            .is_ok()
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "a client of the new CA is let in after SIGHUP");
    assert!(
        refused_with(port, &server_pem, Some(first_client), "UnknownCA").await,
        "a client of the old CA is refused after SIGHUP"
    );
    let (_, stderr) = sigterm_and_wait(started);
    assert!(
        stderr.contains("gRPC clients must present a certificate issued by --tls-client-ca"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_revocation_list() {
    use crate::tls::{TestCa, certificate, refused_with, try_grpc_over_tls};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let (cert, key, server_pem) = certificate(dir.path(), "server");
    let ca = TestCa::new(dir.path(), "clients");
    let crl = dir.path().join("clients.crl");
    std::fs::write(&crl, ca.crl(&[], (2099, 1, 1))).unwrap();
    let flags = [
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-client-ca={}", ca.path.display()),
        format!("--tls-client-crl={}", crl.display()),
        "--api-token=test-token-0123456789".to_owned(),
    ];
    let started = start_with(&db, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let port = started.grpc.parse::<std::net::SocketAddr>().unwrap().port();
    let (kept, leaving) = (ca.client(1), ca.client(2));
    assert_eq!(
        try_grpc_over_tls(port, &server_pem, Some(leaving.clone())).await,
        Ok(())
    );

    // The CA revokes client 2; the new list is written in place, then SIGHUP.
    std::fs::write(&crl, ca.crl(&[2], (2099, 1, 1))).unwrap();
    hangup(&started);
    let mut revoked = false;
    for _ in 0..100 {
        if try_grpc_over_tls(port, &server_pem, Some(leaving.clone()))
            .await
            .is_err_and(|e| e.contains("CertificateRevoked"))
        {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let still_in = try_grpc_over_tls(port, &server_pem, Some(kept)).await;
    let also_revoked = refused_with(port, &server_pem, Some(leaving), "CertificateRevoked").await;
    let (_, stderr) = sigterm_and_wait(started);

    assert!(
        revoked,
        "a client revoked by the new list is refused after SIGHUP"
    );
    assert!(also_revoked, "and stays refused");
    assert_eq!(still_in, Ok(()), "a client not revoked is still let in");
    assert!(
        stderr.contains("not revoked in --tls-client-crl"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TLS certificate reloaded, with the client CAs and revocation lists"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_without_tls_keeps_the_service_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db").display().to_string();
    let token = "test-token-0123456789";
    let started = start_with(&db, &[&format!("--api-token={token}")]);
    let body = crate::helpers::payload("seed_example.json");
    assert_eq!(post(&started.http, token, body.clone()).await, 200);

    hangup(&started);
    hangup(&started);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert_eq!(post(&started.http, token, body).await, 200, "still serving");
    let (_, stderr) = sigterm_and_wait(started);
    assert_eq!(
        stderr
            .matches("SIGHUP: nothing to reload without TLS; still serving")
            .count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("stopped"), "a clean stop after: {stderr}");
}
