//! The load and query benchmark: one run starts the real service (durable SQLite, auth on)
//! and, as baselines, a bare hyper server and a bare tonic server, loads each the same way,
//! and prints throughput, latency, memory and CPU with the service/baseline ratios; then a
//! paced run, the same load on the PostgreSQL backend, a burst, and queries on a store of a
//! million recordings.
//!
//! `bash benches/run.sh` (full) or `bash benches/run.sh --smoke` (seconds, for CI).
//! It fails (exit 1) if any acknowledged callback is missing from the store.

mod baseline;
mod client;
mod dataset;
mod proc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::{Plan, Stats};
use recording_events::pb::v1::recording_event_client::RecordingEventClient;
use recording_events::pb::v1::{FindRecordingsRequest, ListRecordingsRequest, WatchEventsRequest};

struct Config {
    smoke: bool,
    /// Only the throughput and latency section (`--throughput`).
    throughput_only: bool,
    /// Rounds of the side-by-side throughput comparison.
    rounds: usize,
    load_secs: f64,
    workers: usize,
    burst_total: u64,
    burst_conns: usize,
    dataset: i64,
    queries: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if args.iter().any(|a| a == "--serve-hyper") {
        return rt.block_on(baseline::serve_hyper());
    }
    if args.iter().any(|a| a == "--serve-tonic") {
        return rt.block_on(baseline::serve_tonic());
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let store_only = args.iter().any(|a| a == "--store");
    let throughput_only = args.iter().any(|a| a == "--throughput");
    let cfg = if smoke {
        Config {
            smoke,
            throughput_only,
            rounds: 1,
            load_secs: 0.5,
            workers: 16,
            burst_total: 2_000,
            burst_conns: 100,
            dataset: 20_000,
            queries: 200,
        }
    } else {
        Config {
            smoke,
            throughput_only,
            rounds: 3,
            load_secs: 3.0,
            workers: 64,
            burst_total: 100_000,
            burst_conns: 1_000,
            dataset: 1_000_000,
            queries: 5_000,
        }
    };
    let ok = if store_only {
        rt.block_on(store_alone(&cfg))
    } else if args.iter().any(|a| a == "--queries") {
        rt.block_on(queries(&cfg))
    } else if args.iter().any(|a| a == "--paced") {
        rt.block_on(paced_only(&cfg))
    } else if args.iter().any(|a| a == "--tls") {
        rt.block_on(tls_cost(&cfg, &format!("r{}", std::process::id())))
    } else {
        rt.block_on(run(&cfg))
    };
    if !ok {
        eprintln!("FAILED: see above");
        std::process::exit(1);
    }
}

fn work_dir() -> PathBuf {
    // Under target/, on the same disk as a real deployment's database (not a tmpfs).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fresh_db(name: &str) -> PathBuf {
    let path = work_dir().join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn count_events(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

fn baseline(flag: &str, name: &'static str) -> proc::Server {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(flag);
    proc::spawn(name, cmd)
}

async fn wait_ready(server: &proc::Server) -> Duration {
    let started = Instant::now();
    loop {
        if client::http_get(server.http.unwrap(), "/readyz").await == Some(200) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn plan(cfg: &Config, workers: usize) -> Plan {
    Plan {
        workers,
        until: Some(Instant::now() + Duration::from_secs_f64(cfg.load_secs)),
        per_worker: None,
        pace: None,
    }
}

struct Row {
    name: String,
    stats: Stats,
    cpu_seconds: f64,
    cpu_per_1000: f64,
    peak_rss: f64,
}

/// Adds a round's rows to the totals (the first round starts them), row by row.
fn add_round(rows: &mut Vec<Row>, measured: Vec<Row>) {
    if rows.is_empty() {
        *rows = measured;
    } else {
        for (row, m) in rows.iter_mut().zip(measured) {
            row.absorb(m);
        }
    }
}

impl Row {
    /// Adds another round of the same target.
    fn absorb(&mut self, other: Row) {
        self.stats.merge(other.stats);
        self.cpu_seconds += other.cpu_seconds;
        self.cpu_per_1000 = self.cpu_seconds / self.stats.ok.max(1) as f64 * 1000.0;
        self.peak_rss = self.peak_rss.max(other.peak_rss);
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn measure<F: std::future::Future<Output = Stats>>(
    name: &str,
    server: &proc::Server,
    load: F,
) -> Row {
    let cpu0 = server.cpu_seconds();
    let stats = load.await;
    let cpu = server.cpu_seconds() - cpu0;
    Row {
        name: name.to_owned(),
        cpu_seconds: cpu,
        cpu_per_1000: cpu / stats.ok.max(1) as f64 * 1000.0,
        peak_rss: server.rss_mib().1,
        stats,
    }
}

/// Where the service's time goes: its own metrics (group commit, acknowledgement wait)
/// and its threads' CPU, read before and after a load; the difference describes it.
#[derive(Debug, Default, Clone, Copy)]
struct Inside {
    batches: f64,
    batched: f64,
    commit_seconds: f64,
    commits_within_5ms: f64,
    rewinds: f64,
    rewind_seconds: f64,
    db_syncs: f64,
    db_sync_seconds: f64,
    acks: f64,
    ack_seconds: f64,
    acks_within_5ms: f64,
    writer_cpu: f64,
    checkpoint_cpu: f64,
    workers_cpu: f64,
}

impl Inside {
    async fn read(server: &proc::Server) -> Inside {
        let text = match server.http {
            Some(addr) => client::http_get_text(addr, "/metrics").await,
            None => None,
        }
        .unwrap_or_default();
        // The unlabelled `name value` line of a metric.
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Inside {
            batches: value("recording_events_store_batch_size_count"),
            batched: value("recording_events_store_batch_size_sum"),
            commit_seconds: value("recording_events_store_commit_seconds_sum"),
            commits_within_5ms: value("recording_events_store_commit_seconds_bucket{le=\"0.005\"}"),
            rewinds: value("recording_events_store_rewind_seconds_count"),
            rewind_seconds: value("recording_events_store_rewind_seconds_sum"),
            db_syncs: value("recording_events_store_checkpoint_sync_seconds_count"),
            db_sync_seconds: value("recording_events_store_checkpoint_sync_seconds_sum"),
            acks: value("recording_events_callback_seconds_count"),
            ack_seconds: value("recording_events_callback_seconds_sum"),
            acks_within_5ms: value("recording_events_callback_seconds_bucket{le=\"0.005\"}"),
            writer_cpu: server.thread_cpu_seconds("sqlite-writer"),
            checkpoint_cpu: server.thread_cpu_seconds("sqlite-checkpoi"),
            workers_cpu: server.thread_cpu_seconds("tokio-rt-worker"),
        }
    }

    /// `self` - `before`, added to `total`.
    fn add_since(self, before: Inside, total: &mut Inside) {
        total.batches += self.batches - before.batches;
        total.batched += self.batched - before.batched;
        total.commit_seconds += self.commit_seconds - before.commit_seconds;
        total.commits_within_5ms += self.commits_within_5ms - before.commits_within_5ms;
        total.rewinds += self.rewinds - before.rewinds;
        total.rewind_seconds += self.rewind_seconds - before.rewind_seconds;
        total.db_syncs += self.db_syncs - before.db_syncs;
        total.db_sync_seconds += self.db_sync_seconds - before.db_sync_seconds;
        total.acks += self.acks - before.acks;
        total.ack_seconds += self.ack_seconds - before.ack_seconds;
        total.acks_within_5ms += self.acks_within_5ms - before.acks_within_5ms;
        total.writer_cpu += self.writer_cpu - before.writer_cpu;
        total.checkpoint_cpu += self.checkpoint_cpu - before.checkpoint_cpu;
        total.workers_cpu += self.workers_cpu - before.workers_cpu;
    }

    fn print(&self, name: &str) {
        let per = |seconds: f64| seconds / self.batched.max(1.0) * 1e6;
        println!(
            "- inside the service, {name}: batches of {:.1} callbacks, a commit (with its \
             fsync) {:.2} ms, {:.2}% over 5 ms; {:.0} WAL rewind(s) of {:.1} ms, after \
             database syncs of {:.1} ms; validation to acknowledgement \
             {:.2} ms on average, {:.2}% over 5 ms; CPU per callback: writer {:.1} µs, \
             checkpointer {:.1} µs, request threads {:.1} µs",
            self.batched / self.batches.max(1.0),
            self.commit_seconds / self.batches.max(1.0) * 1e3,
            100.0 * (1.0 - self.commits_within_5ms / self.batches.max(1.0)),
            self.rewinds,
            self.rewind_seconds / self.rewinds.max(1.0) * 1e3,
            self.db_sync_seconds / self.db_syncs.max(1.0) * 1e3,
            self.ack_seconds / self.acks.max(1.0) * 1e3,
            100.0 * (1.0 - self.acks_within_5ms / self.acks.max(1.0)),
            per(self.writer_cpu),
            per(self.checkpoint_cpu),
            per(self.workers_cpu),
        );
    }
}

fn print_rows(rows: &mut [Row]) {
    println!(
        "| target | ok | failed | req/s | p50 ms | p99 ms | p999 ms | CPU-s/1000 | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter_mut() {
        let (p50, p99, p999) = (r.stats.pct(0.50), r.stats.pct(0.99), r.stats.pct(0.999));
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.3} | {:.1} |",
            r.name,
            r.stats.ok,
            r.stats.failed,
            r.stats.rps(),
            p50,
            p99,
            p999,
            r.cpu_per_1000,
            r.peak_rss
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

async fn run(cfg: &Config) -> bool {
    let mut all_ok = true;
    let run_id = format!("r{}", std::process::id());
    println!(
        "# recording-events benchmark ({})\n",
        if cfg.smoke { "smoke" } else { "full" }
    );

    let (fsync_p50, fsync_p99) = proc::fsync_latency(&work_dir(), if cfg.smoke { 20 } else { 300 });
    println!(
        "disk fsync (4 KiB write + fdatasync): p50 {fsync_p50:.2} ms, p99 {fsync_p99:.2} ms\n"
    );

    // --- throughput: service vs baselines, same client settings -------------------------
    let db = fresh_db("load.db");
    let service = proc::spawn("service", proc::service_command(&db));
    wait_ready(&service).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = service.rss_mib().0;
    let hyper_base = baseline("--serve-hyper", "bare hyper");
    let tonic_base = baseline("--serve-tonic", "bare tonic");

    // Rounds alternate baseline and service, so a drift of the shared machine (other
    // load, CPU frequency) hits both sides of a ratio alike; the verdict is on the median
    // ratio of the rounds, the table sums all rounds.
    let w = cfg.workers;
    let mut rows: Vec<Row> = Vec::new();
    let (mut http_ratios, mut grpc_ratios) = (Vec::new(), Vec::new());
    let (mut http_inside, mut grpc_inside) = (Inside::default(), Inside::default());
    for round in 0..cfg.rounds {
        let hyper_row = measure(
            "bare hyper, HTTP",
            &hyper_base,
            client::http_load(hyper_base.http.unwrap(), &run_id, plan(cfg, w)),
        )
        .await;
        let before = Inside::read(&service).await;
        let http_row = measure(
            "service, HTTP (durable)",
            &service,
            client::http_load(
                service.http.unwrap(),
                &format!("{run_id}h{round}"),
                plan(cfg, w),
            ),
        )
        .await;
        Inside::read(&service)
            .await
            .add_since(before, &mut http_inside);
        let tonic_row = measure(
            "bare tonic, gRPC",
            &tonic_base,
            client::grpc_load(tonic_base.grpc.unwrap(), &run_id, plan(cfg, w)),
        )
        .await;
        let before = Inside::read(&service).await;
        let grpc_row = measure(
            "service, gRPC (durable)",
            &service,
            client::grpc_load(
                service.grpc.unwrap(),
                &format!("{run_id}g{round}"),
                plan(cfg, w),
            ),
        )
        .await;
        Inside::read(&service)
            .await
            .add_since(before, &mut grpc_inside);
        let measured = vec![hyper_row, http_row, tonic_row, grpc_row];
        http_ratios.push(measured[1].stats.rps() / measured[0].stats.rps());
        grpc_ratios.push(measured[3].stats.rps() / measured[2].stats.rps());
        add_round(&mut rows, measured);
    }
    println!(
        "## Throughput and latency, {w} connections, {} rounds of {:.1} s per target\n",
        cfg.rounds, cfg.load_secs
    );
    print_rows(&mut rows);
    let http_ratio = median(&mut http_ratios);
    let grpc_ratio = median(&mut grpc_ratios);
    let list = |r: &[f64]| {
        r.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!();
    println!(
        "- ratio service/bare hyper (HTTP), median of rounds [{}]: {http_ratio:.3} (target >= 0.50: {})",
        list(&http_ratios),
        verdict(http_ratio >= 0.5)
    );
    println!(
        "- ratio service/bare tonic (gRPC), median of rounds [{}]: {grpc_ratio:.3} (target >= 0.50: {})",
        list(&grpc_ratios),
        verdict(grpc_ratio >= 0.5)
    );

    http_inside.print("HTTP");
    grpc_inside.print("gRPC");

    // Every acknowledged callback is stored.
    let acked = rows[1].stats.ok + rows[3].stats.ok;
    let stored = count_events(&db);
    println!(
        "- acknowledged {acked}, stored {stored}: {}",
        if acked == stored {
            "all stored"
        } else {
            "MISMATCH"
        }
    );
    all_ok &= acked == stored && rows[1].stats.failed == 0 && rows[3].stats.failed == 0;

    // --- latency at half the measured maximum --------------------------------------------
    let half = rows[1].stats.rps() / 2.0;
    let pace = Duration::from_secs_f64(w as f64 / half);
    let paced_plan = Plan {
        pace: Some(pace),
        ..plan(cfg, w)
    };
    let before = Inside::read(&service).await;
    let mut paced = measure(
        "service, HTTP at half max",
        &service,
        client::http_load(service.http.unwrap(), &format!("{run_id}p"), paced_plan),
    )
    .await;
    let mut paced_inside = Inside::default();
    Inside::read(&service)
        .await
        .add_since(before, &mut paced_inside);
    let p99 = paced.stats.pct(0.99);
    println!(
        "- at half the max ({half:.0} req/s offered, {:.0} done): p50 {:.2} ms, p99 {p99:.2} ms; 3 x fsync p50 = {:.2} ms (target: {})",
        paced.stats.rps(),
        paced.stats.pct(0.5),
        3.0 * fsync_p50,
        verdict(p99 <= 3.0 * fsync_p50)
    );
    paced_inside.print("HTTP at half the max");
    all_ok &= paced.stats.failed == 0;
    println!(
        "- service idle RSS after start: {idle_rss:.1} MiB (target <= 30: {})",
        verdict(idle_rss <= 30.0)
    );
    drop((service, hyper_base, tonic_base));
    all_ok &= tls_cost(cfg, &run_id).await;
    if cfg.throughput_only {
        return all_ok;
    }

    // --- burst -----------------------------------------------------------------------------
    let burst_db = fresh_db("burst.db");
    let service = proc::spawn("service", proc::service_command(&burst_db));
    wait_ready(&service).await;
    let per = cfg.burst_total / cfg.burst_conns as u64;
    let burst_plan = Plan {
        workers: cfg.burst_conns,
        until: None,
        per_worker: Some(per),
        pace: None,
    };
    let started = Instant::now();
    let burst = client::http_load(service.http.unwrap(), &format!("{run_id}b"), burst_plan).await;
    let wall = started.elapsed();
    let stored = count_events(&burst_db);
    let peak = service.rss_mib().1;
    println!(
        "\n## Burst\n\n- {} distinct callbacks over {} connections: {} acknowledged, {} failed, {stored} stored, wall {:.2} s ({:.0}/s); peak RSS {peak:.1} MiB (target <= 150: {})",
        per * cfg.burst_conns as u64,
        cfg.burst_conns,
        burst.ok,
        burst.failed,
        wall.as_secs_f64(),
        burst.ok as f64 / wall.as_secs_f64(),
        verdict(peak <= 150.0)
    );
    all_ok &= burst.ok == per * cfg.burst_conns as u64 && stored == burst.ok;
    all_ok &= replay(&service, stored).await;
    drop(service);

    // --- the writer alone ------------------------------------------------------------------
    all_ok &= store_alone(cfg).await;

    // --- a big store: start-up and queries ----------------------------------------------
    all_ok &= queries(cfg).await;

    // --- the same load on the PostgreSQL backend (last: it leaves PostgreSQL busy) --------
    all_ok &= postgres(cfg, &run_id).await;
    all_ok
}

/// What TLS costs: the same HTTP load on two fresh services, one plain and one with
/// `--tls-cert` (a self-signed certificate made here), rounds alternating; the
/// connections are kept, so this is the cost of encryption, not of handshakes.
async fn tls_cost(cfg: &Config, run_id: &str) -> bool {
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

/// A gRPC client of `service`.
async fn grpc_client(service: &proc::Server) -> RecordingEventClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", service.grpc.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    RecordingEventClient::new(channel)
}

/// `msg` with the bench's bearer token.
fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", client::TOKEN).parse().unwrap(),
    );
    req
}

/// WatchEvents from the start over the `stored` events the burst left: how fast a
/// watcher catches up (each message carries its recording as it was after the event).
async fn replay(service: &proc::Server, stored: u64) -> bool {
    let mut client = grpc_client(service).await;
    let started = Instant::now();
    let mut stream = client
        .watch_events(authed(WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let (mut seen, mut in_order) = (0u64, true);
    while seen < stored {
        let message = stream
            .message()
            .await
            .unwrap()
            .expect("the stream stays open");
        seen += 1;
        in_order &= message.sequence == seen as i64 && message.recording.is_some();
    }
    let took = started.elapsed();
    println!(
        "- WatchEvents replay of those {stored} events over gRPC: {:.2} s ({:.0} events/s), in order, each with its recording: {in_order}",
        took.as_secs_f64(),
        stored as f64 / took.as_secs_f64()
    );
    in_order
}

/// The service on PostgreSQL (a fresh schema of `TEST_POSTGRES_URL`, default the local
/// `test` database), same load as above. Skipped, and said so, when PostgreSQL is not
/// reachable.
async fn postgres(cfg: &Config, run_id: &str) -> bool {
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
    let mut rows = vec![
        measure(
            "service on PostgreSQL, HTTP",
            &service,
            client::http_load(service.http.unwrap(), &format!("{run_id}ph"), plan(cfg, w)),
        )
        .await,
        measure(
            "service on PostgreSQL, gRPC",
            &service,
            client::grpc_load(service.grpc.unwrap(), &format!("{run_id}pg"), plan(cfg, w)),
        )
        .await,
    ];
    drop(service);
    println!("\n## PostgreSQL backend ({w} connections, same client)\n");
    print_rows(&mut rows);
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

/// Only a paced run on a fresh store (`--paced`): `BENCH_RATE` callbacks/s (default
/// 10,000) over HTTP for `BENCH_SECS` seconds (default 5), after a second of warm-up.
async fn paced_only(cfg: &Config) -> bool {
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rate, secs) = (env("BENCH_RATE", 10_000.0), env("BENCH_SECS", 5.0));
    let (fsync_p50, _) = proc::fsync_latency(&work_dir(), 300);
    let db = fresh_db("paced.db");
    let service = proc::spawn("service", proc::service_command(&db));
    wait_ready(&service).await;
    let w = cfg.workers;
    let paced = |secs: f64| Plan {
        workers: w,
        until: Some(Instant::now() + Duration::from_secs_f64(secs)),
        per_worker: None,
        pace: Some(Duration::from_secs_f64(w as f64 / rate)),
    };
    let run_id = format!("q{}", std::process::id());
    client::http_load(service.http.unwrap(), &format!("{run_id}w"), paced(1.0)).await;
    let before = Inside::read(&service).await;
    let mut row = measure(
        "service, HTTP paced",
        &service,
        client::http_load(service.http.unwrap(), &run_id, paced(secs)),
    )
    .await;
    let mut inside = Inside::default();
    Inside::read(&service).await.add_since(before, &mut inside);
    println!(
        "- paced at {rate:.0}/s offered, {:.0} done: p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; 3 x fsync p50 = {:.2} ms",
        row.stats.rps(),
        row.stats.pct(0.5),
        row.stats.pct(0.99),
        row.stats.pct(0.999),
        3.0 * fsync_p50
    );
    inside.print("paced");
    row.stats.failed == 0
}

async fn queries(cfg: &Config) -> bool {
    let db = work_dir().join(format!("dataset-v4-{}.db", cfg.dataset));
    if !db.exists() {
        let tmp = fresh_db("dataset-building.db");
        let service = proc::spawn("service", proc::service_command(&tmp));
        wait_ready(&service).await;
        drop(service);
        let t = Instant::now();
        dataset::fill(&tmp, cfg.dataset);
        std::fs::rename(&tmp, &db).unwrap();
        println!(
            "\n(built a store of {} events and recordings in {:.1} s; kept in {})",
            cfg.dataset,
            t.elapsed().as_secs_f64(),
            db.display()
        );
    }
    let started = Instant::now();
    let service = proc::spawn("service", proc::service_command(&db));
    let ready = started.elapsed() + wait_ready(&service).await;
    println!(
        "\n## Store of {} events and {} recordings\n",
        cfg.dataset, cfg.dataset
    );
    println!(
        "- ready in {:.0} ms after spawn (target <= 300: {})",
        ready.as_secs_f64() * 1000.0,
        verdict(ready <= Duration::from_millis(300))
    );

    let mut client = grpc_client(&service).await;
    let hours = cfg.dataset / dataset::STREAMS;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as i64
    };
    let mut find = Vec::with_capacity(cfg.queries);
    let mut list = Vec::with_capacity(cfg.queries);
    let mut found_all = true;
    // The first queries warm the page cache of a freshly started server; then measure.
    let warm_up = cfg.queries / 10;
    for q in 0..cfg.queries + warm_up {
        if q == warm_up {
            find.clear();
            list.clear();
        }
        let stream = format!("cam_{:04}", rand(dataset::STREAMS));
        let at_us = dataset::BASE_US + rand(hours * dataset::HOUR_US);
        let at = prost_types::Timestamp {
            seconds: at_us / 1_000_000,
            nanos: 0,
        };
        let t = Instant::now();
        let reply = client
            .find_recordings(authed(FindRecordingsRequest {
                stream: stream.clone(),
                at: Some(at),
                ..Default::default()
            }))
            .await
            .unwrap();
        find.push(t.elapsed().as_micros() as u32);
        found_all &= reply.get_ref().matches.len() == 1;
        let t = Instant::now();
        let reply = client
            .list_recordings(authed(ListRecordingsRequest {
                stream,
                page_size: 20,
                ..Default::default()
            }))
            .await
            .unwrap();
        list.push(t.elapsed().as_micros() as u32);
        found_all &= reply.get_ref().recordings.len() == 20.min(hours as usize);
    }
    let mut find = Stats {
        latencies_us: find,
        ..Default::default()
    };
    let mut list = Stats {
        latencies_us: list,
        ..Default::default()
    };
    let find_p99 = find.pct(0.99);
    println!(
        "- FindRecordings(stream, at), {} queries over gRPC: p50 {:.3} ms, p99 {find_p99:.3} ms (target p99 < 1 ms: {})",
        cfg.queries,
        find.pct(0.5),
        verdict(find_p99 < 1.0)
    );
    println!(
        "- ListRecordings(stream, page_size 20): p50 {:.3} ms, p99 {:.3} ms",
        list.pct(0.5),
        list.pct(0.99)
    );
    println!(
        "- every FindRecordings found exactly its one file, every list page was full: {found_all}"
    );

    // The same lookups on the store itself, in this process: the query without the RPC.
    // One process at a time opens a SQLite store: the service goes first.
    drop(client);
    drop(service);
    let store = recording_events::store::open(&format!("sqlite://{}", db.display()), 16, 16)
        .await
        .unwrap();
    let mut direct = Vec::with_capacity(cfg.queries);
    for q in 0..cfg.queries + cfg.queries / 10 {
        let stream = format!("cam_{:04}", rand(dataset::STREAMS));
        let at_us = dataset::BASE_US + rand(hours * dataset::HOUR_US);
        let at = chrono::DateTime::from_timestamp_micros(at_us).unwrap();
        let query = recording_events::store::FindQuery {
            stream,
            app: None,
            start: at,
            end: at + chrono::Duration::microseconds(1),
            limit: 1000,
        };
        let t = Instant::now();
        let found = store.find_recordings(query).await.unwrap();
        if q >= cfg.queries / 10 {
            direct.push(t.elapsed().as_micros() as u32);
        }
        found_all &= found.len() == 1;
    }
    let mut direct = Stats {
        latencies_us: direct,
        ..Default::default()
    };
    println!(
        "- the same FindRecordings on the store, in process (no RPC): p50 {:.3} ms, p99 {:.3} ms",
        direct.pct(0.5),
        direct.pct(0.99)
    );
    found_all
}

/// The store alone, in this process: appends with 512 in flight (`BENCH_IN_FLIGHT`), no
/// HTTP or gRPC, the callbacks of one camera (`BENCH_STREAMS` spreads them over that
/// many). Shows the single writer's ceiling and its CPU per event.
async fn store_alone(cfg: &Config) -> bool {
    let in_flight = client::env_count("BENCH_IN_FLIGHT", 512);
    let streams = client::streams();
    let total: usize = if cfg.smoke { 5_000 } else { 200_000 };
    let db = fresh_db("store-alone.db");
    let store = recording_events::store::open(&format!("sqlite://{}", db.display()), 8192, 16)
        .await
        .unwrap();
    let run = format!("s{}", std::process::id());
    let events: Vec<_> = (0..total)
        .map(|i| {
            let body = client::callback_body(&run, 0, i as u64);
            let req = serde_json::from_slice(&body).unwrap();
            recording_events::store::NewEvent::new(
                recording_events::domain::Callback::parse(req).unwrap(),
                String::from_utf8(body.to_vec()).unwrap(),
                chrono::Utc::now(),
            )
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(events));
    let cpu0 = proc::thread_cpu_seconds("sqlite-writer");
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let store = store.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                loop {
                    let Some(ev) = queue.lock().unwrap().pop() else {
                        return ok;
                    };
                    match store.append(ev).await {
                        Ok(a) if !a.duplicate => ok += 1,
                        Ok(_) => eprintln!("unexpected duplicate"),
                        Err(e) => eprintln!("append failed: {e}"),
                    }
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writer_cpu = proc::thread_cpu_seconds("sqlite-writer") - cpu0;
    // Bounded under steady load: rewound once past 128 MiB (see the store's checkpoints).
    let wal_mib = std::fs::metadata(format!("{}-wal", db.display()))
        .map_or(0.0, |m| m.len() as f64 / 1048576.0);
    drop(store);
    let stored = count_events(&db);
    println!(
        "\n## The store alone ({in_flight} appends in flight, {streams} camera(s), in process)\n\n- {ok} of {total} appended in {elapsed:.2} s: {:.0} appends/s; writer thread CPU {:.1} µs per event; {stored} stored; WAL file {wal_mib:.0} MiB at the end",
        ok as f64 / elapsed,
        writer_cpu / ok.max(1) as f64 * 1e6,
    );
    ok == total as u64 && stored == ok
}
