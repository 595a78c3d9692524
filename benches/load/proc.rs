//! Child processes under test and what /proc says about them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process started for the benchmark; killed on drop.
pub struct Server {
    pub child: Child,
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// CPU seconds (user + system) used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// CPU seconds used so far by its threads named `name`.
    pub fn thread_cpu_seconds(&self, name: &str) -> f64 {
        threads_cpu_seconds(&format!("/proc/{}/task", self.child.id()), name)
    }

    /// Resident memory now and at its peak, in MiB.
    pub fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }
}

/// Starts a server and waits until it prints its listening lines; returns the addresses.
pub fn spawn(name: &'static str, mut cmd: Command) -> Server {
    use std::io::{BufRead, BufReader};
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "info");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let (mut http, mut grpc) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (http.is_none() || grpc.is_none()) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let addr = |marker: &str| {
            line.split_once(marker)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|a| {
                    a.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .ok()
                })
        };
        http = http.or_else(|| addr("http listening on "));
        grpc = grpc.or_else(|| addr("grpc listening on "));
        if line.contains("baseline listening") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let _ = name;
    Server { child, http, grpc }
}

/// The release service binary, built by benches/run.sh.
pub fn service_command(db: &Path) -> Command {
    service_command_url(&format!("sqlite://{}", db.display()))
}

/// The release service binary on any store URL.
pub fn service_command_url(url: &str) -> Command {
    // `BENCH_SERVICE_BIN` runs another build of the service (to compare two builds).
    let bin = std::env::var_os("BENCH_SERVICE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/recording-events"),
        std::path::PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` (benches/run.sh does)",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args([
        "--grpc-addr=127.0.0.1:0",
        "--http-addr=127.0.0.1:0",
        "--api-token=bench-token-0123456789",
        "--ingest-queue=16384",
    ]);
    cmd.arg(format!("--database-url={url}"));
    cmd
}

/// fsync latency of the disk holding `dir`: p50 and p99 of 4 KiB write + fdatasync, in ms.
pub fn fsync_latency(dir: &Path, rounds: usize) -> (f64, f64) {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    samples.sort_by(f64::total_cmp);
    (samples[rounds / 2], samples[rounds * 99 / 100])
}

/// CPU seconds (user + system) of a process or thread, from its `/proc/…/stat`.
pub fn cpu_seconds_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads named `name` (e.g. `sqlite-writer`).
pub fn thread_cpu_seconds(name: &str) -> f64 {
    threads_cpu_seconds("/proc/self/task", name)
}

/// CPU seconds of the threads named `name` in the task directory `tasks` (e.g.
/// `/proc/<pid>/task`).
pub fn threads_cpu_seconds(tasks: &str, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(tasks) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| cpu_seconds_of(&t.path().join("stat").to_string_lossy()))
        .sum()
}
