//! What TLS costs, with connections kept and with a new connection per callback.

use super::*;

/// What TLS costs: the same HTTP load on two fresh services, one plain and one with
/// `--tls-cert` (a self-signed certificate made here), rounds alternating; the
/// connections are kept, so this is the cost of encryption, not of handshakes.
pub(super) async fn run(cfg: &Config, run_id: &str) -> bool {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (
        work_dir().join("bench-tls.crt"),
        work_dir().join("bench-tls.key"),
    );
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (plain_db, tls_db) = (fresh_db("plain.db"), fresh_db("tls.db"));
    let plain = proc::spawn("service", proc::service_command(&plain_db));
    let mut command = proc::service_command(&tls_db);
    command.arg(format!("--tls-cert={}", cert.display()));
    command.arg(format!("--tls-key={}", key.display()));
    // Both have printed their addresses, so both serve; /readyz is checked on the plain
    // one (the same binary and store).
    let tls = proc::spawn("service with TLS", command);
    wait_ready(&plain).await;
    let connector = client::tls_connector(&made.cert.pem());
    // What a connection costs without the service: a new connection per request to bare
    // hyper.
    let hyper_base = baseline("--serve-hyper", "bare hyper");
    let mut all_ok = true;
    let mut acked = (0, 0);
    for per_connection in [false, true] {
        let (mut rows, mut ratios, mut to_hyper): (Vec<Row>, Vec<f64>, Vec<f64>) =
            (Vec::new(), Vec::new(), Vec::new());
        for round in 0..cfg.rounds {
            let id = |front: &str| format!("{run_id}{front}{round}{}", u8::from(per_connection));
            let load = |addr, tls, id: String| async move {
                if per_connection {
                    client::https_load_per_connection(addr, tls, &id, plan(cfg, cfg.workers)).await
                } else {
                    client::https_load(addr, tls, &id, plan(cfg, cfg.workers)).await
                }
            };
            let mut measured = vec![
                measure(
                    "service, HTTP",
                    &plain,
                    load(plain.http.unwrap(), None, id("c")),
                )
                .await,
                measure(
                    "service, HTTPS (TLS 1.3)",
                    &tls,
                    load(tls.http.unwrap(), Some(connector.clone()), id("t")),
                )
                .await,
            ];
            ratios.push(measured[1].stats.rps() / measured[0].stats.rps());
            if per_connection {
                let base = measure(
                    "bare hyper, HTTP",
                    &hyper_base,
                    load(hyper_base.http.unwrap(), None, id("h")),
                )
                .await;
                to_hyper.push(measured[0].stats.rps() / base.stats.rps());
                measured.push(base);
            }
            add_round(&mut rows, measured);
        }
        if per_connection {
            println!(
                "\n## TLS, a new connection per callback (handshake included), {} at once\n",
                cfg.workers
            );
        } else {
            println!("\n## TLS, {} connections kept open\n", cfg.workers);
        }
        print_rows(&mut rows);
        println!(
            "\n- ratio HTTPS/HTTP, median of rounds: {:.3}",
            median(&mut ratios)
        );
        if per_connection {
            println!(
                "- ratio service/bare hyper (HTTP, a new connection each), median of rounds: {:.3}",
                median(&mut to_hyper)
            );
        }
        acked.0 += rows[0].stats.ok;
        acked.1 += rows[1].stats.ok;
        all_ok &= rows.iter().all(|r| r.stats.failed == 0);
    }
    let stored = (count_events(&plain_db), count_events(&tls_db));
    println!(
        "- acknowledged {acked:?}, stored {stored:?}: {}",
        if acked == stored {
            "all stored"
        } else {
            "MISMATCH"
        }
    );
    all_ok && acked == stored
}
