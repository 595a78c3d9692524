//! The writer alone, in process: no HTTP or gRPC in front of it.

use super::*;

/// The store alone, in this process: appends with 512 in flight (`BENCH_IN_FLIGHT`), no
/// HTTP or gRPC, the callbacks of one camera (`BENCH_STREAMS` spreads them over that
/// many). Shows the single writer's ceiling and its CPU per event.
pub(super) async fn run(cfg: &Config) -> bool {
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
