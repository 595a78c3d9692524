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
mod inside;
mod postgres;
mod proc;
mod queries;
mod store_alone;
mod tls_cost;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::{Plan, Stats};
use inside::Inside;
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
        rt.block_on(store_alone::run(&cfg))
    } else if args.iter().any(|a| a == "--queries") {
        rt.block_on(queries::run(&cfg))
    } else if args.iter().any(|a| a == "--paced") {
        rt.block_on(paced_only(&cfg))
    } else if args.iter().any(|a| a == "--postgres") {
        let cfg = Config {
            load_secs: client::env_count("BENCH_SECS", cfg.load_secs as usize) as f64,
            ..cfg
        };
        rt.block_on(postgres::run(&cfg, &format!("r{}", std::process::id())))
    } else if args.iter().any(|a| a == "--tls") {
        rt.block_on(tls_cost::run(&cfg, &format!("r{}", std::process::id())))
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
    all_ok &= tls_cost::run(cfg, &run_id).await;
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
    all_ok &= store_alone::run(cfg).await;

    // --- a big store: start-up and queries ----------------------------------------------
    all_ok &= queries::run(cfg).await;

    // --- the same load on the PostgreSQL backend (last: it leaves PostgreSQL busy) --------
    all_ok &= postgres::run(cfg, &run_id).await;
    all_ok
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

/// Only a paced run on a fresh store (`--paced`): `BENCH_RATE` callbacks/s (default
/// 10,000) over HTTP (over gRPC with `BENCH_FRONT=grpc`) for `BENCH_SECS` seconds
/// (default 5), after a second of warm-up.
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
    let grpc = std::env::var("BENCH_FRONT").is_ok_and(|f| f == "grpc");
    let load = |run: String, plan: Plan| async move {
        match grpc {
            true => client::grpc_load(service.grpc.unwrap(), &run, plan).await,
            false => client::http_load(service.http.unwrap(), &run, plan).await,
        }
    };
    load(format!("{run_id}w"), paced(1.0)).await;
    let before = Inside::read(&service).await;
    let label = if grpc {
        "service, gRPC paced"
    } else {
        "service, HTTP paced"
    };
    let mut row = measure(label, &service, load(run_id, paced(secs))).await;
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
