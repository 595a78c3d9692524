//! Queries on a store of a million recordings (built once and kept): FindRecordings and
//! ListRecordings over gRPC and on the store in process, ready time, and a replay.

use super::*;

/// A window of `seconds` from a second after the start of the store's `hour`.
fn window(hour: i64, seconds: i64) -> (prost_types::Timestamp, prost_types::Timestamp) {
    let start = (dataset::BASE_US + hour * dataset::HOUR_US) / 1_000_000 + 1;
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    (at(start), at(start + seconds))
}

pub(super) async fn run(cfg: &Config) -> bool {
    let db = work_dir().join(format!("dataset-v6-{}.db", cfg.dataset));
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
    let mut list_window = Vec::with_capacity(cfg.queries);
    let mut found_all = true;
    // The first queries warm the page cache of a freshly started server; then measure.
    let warm_up = cfg.queries / 10;
    for q in 0..cfg.queries + warm_up {
        if q == warm_up {
            find.clear();
            list.clear();
            list_window.clear();
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
                stream: stream.clone(),
                page_size: 20,
                ..Default::default()
            }))
            .await
            .unwrap();
        list.push(t.elapsed().as_micros() as u32);
        found_all &= reply.get_ref().recordings.len() == 20.min(hours as usize);
        // Two hours of the stream: the two files that begin in them, and the one before.
        let (window_start, window_end) = window(1 + rand(hours - 3), 7200);
        let t = Instant::now();
        let reply = client
            .list_recordings(authed(ListRecordingsRequest {
                stream,
                window_start: Some(window_start),
                window_end: Some(window_end),
                page_size: 20,
                ..Default::default()
            }))
            .await
            .unwrap();
        list_window.push(t.elapsed().as_micros() as u32);
        found_all &= reply.get_ref().recordings.len() == 3;
    }
    let mut find = Stats {
        latencies_us: find,
        ..Default::default()
    };
    let mut list = Stats {
        latencies_us: list,
        ..Default::default()
    };
    let mut list_window = Stats {
        latencies_us: list_window,
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
        "- ListRecordings(stream, a window of 2 hours, page_size 20): p50 {:.3} ms, p99 {:.3} ms",
        list_window.pct(0.5),
        list_window.pct(0.99)
    );
    // Half an hour of every camera (no stream), at any hour of the store's 41 days: the
    // newest recordings walked, then each stream's ranges by start.
    let mut all_streams = Vec::new();
    for q in 0..cfg.queries / 10 + warm_up / 10 {
        let (window_start, window_end) = window(rand(hours), 1800);
        let t = Instant::now();
        let reply = client
            .list_recordings(authed(ListRecordingsRequest {
                window_start: Some(window_start),
                window_end: Some(window_end),
                page_size: 20,
                ..Default::default()
            }))
            .await
            .unwrap();
        if q >= warm_up / 10 {
            all_streams.push(t.elapsed().as_micros() as u32);
        }
        found_all &= reply.get_ref().recordings.len() == 20;
    }
    let mut all_streams = Stats {
        latencies_us: all_streams,
        ..Default::default()
    };
    println!(
        "- ListRecordings(a window of 30 minutes of every stream, at any hour, page_size 20), {} queries: p50 {:.3} ms, p99 {:.3} ms",
        all_streams.latencies_us.len(),
        all_streams.pct(0.5),
        all_streams.pct(0.99)
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
