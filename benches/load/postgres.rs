//! The same load on the PostgreSQL backend.

use super::*;

/// The service on PostgreSQL (a fresh schema of `TEST_POSTGRES_URL`, default the local
/// `test` database), same load as above. Skipped, and said so, when PostgreSQL is not
/// reachable.
pub(super) async fn run(cfg: &Config, run_id: &str) -> bool {
    let base = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Ok((client, connection)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await
    else {
        println!("\n## PostgreSQL\n\n- skipped: PostgreSQL not reachable at {base}");
        return true;
    };
    tokio::spawn(connection);
    let schema = format!("re_bench_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let service = proc::spawn("service on postgres", proc::service_command_url(&url));
    wait_ready(&service).await;
    let w = cfg.workers;
    let (http, http_inside) = measure_inside(
        "service on PostgreSQL, HTTP",
        &service,
        client::http_load(service.http.unwrap(), &format!("{run_id}ph"), plan(cfg, w)),
    )
    .await;
    let (grpc, grpc_inside) = measure_inside(
        "service on PostgreSQL, gRPC",
        &service,
        client::grpc_load(service.grpc.unwrap(), &format!("{run_id}pg"), plan(cfg, w)),
    )
    .await;
    let mut rows = vec![http, grpc];
    drop(service);
    println!("\n## PostgreSQL backend ({w} connections, same client)\n");
    print_rows(&mut rows);
    println!();
    http_inside.print_postgres("HTTP");
    grpc_inside.print_postgres("gRPC");
    let acked = rows[0].stats.ok + rows[1].stats.ok;
    let stored: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "\n- acknowledged {acked}, stored {stored}: {}",
        if acked == stored as u64 {
            "all stored"
        } else {
            "MISMATCH"
        }
    );
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    acked == stored as u64 && rows.iter().all(|r| r.stats.failed == 0)
}

/// [`measure`], and what the service reports of itself around the load.
async fn measure_inside(
    name: &str,
    server: &proc::Server,
    load: impl std::future::Future<Output = Stats>,
) -> (Row, Inside) {
    let before = Inside::read(server).await;
    let row = measure(name, server, load).await;
    let mut inside = Inside::default();
    Inside::read(server).await.add_since(before, &mut inside);
    (row, inside)
}
