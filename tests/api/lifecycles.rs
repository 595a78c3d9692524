//! Many recordings at once, as Huawei sends them: six cameras recording MP4 and HLS in
//! ten-minute files, every callback of them shuffled, a quarter redelivered, some
//! NEW_FILE_STARTs without their times or `job_id`, some FILE_COMPLETEs without `job_id`,
//! the last file of each series never completed (some failed), and some tasks ended.
//! Checked against
//! what was recorded: which files FindRecordings finds at an instant and at which second,
//! that ListRecordings' windows hold what FindRecordings' do, and that a follower's copy
//! kept from WatchEvents alone is the store's. And the same callbacks in other orders
//! leave the same recordings; ListRecordings in small pages, filtered every way, holds
//! what its filters pick; WatchEvents from any cursor, filtered every way, replays what
//! was sent live.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use recording_events::pb::v1::{
    FindRecordingsRequest, ListRecordingsRequest, Recording, RecordingState, WatchEventsRequest,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, authed, spawn_app, spawn_postgres_app, spawn_replica};

const CAMERAS: usize = 6;
const FORMATS: [&str; 2] = ["MP4", "HLS"];
const FILES: i64 = 8;
const FILE_MINUTES: i64 = 10;

/// A file as recorded: its job, start, and end (none for the last of each series, whose
/// FILE_COMPLETE never came).
struct File {
    camera: String,
    job: String,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The callbacks, in the order they are sent, and the files they record that
/// FindRecordings should find at an instant (a last file announced without its times is
/// found only from when that was received: not in the past this test asks about).
fn lifecycles(rng: &mut StdRng) -> (Vec<Value>, Vec<File>) {
    let (mut events, mut files) = (Vec::new(), Vec::new());
    for camera in (0..CAMERAS).map(|c| format!("cam_{c:03}")) {
        for format in FORMATS {
            let base = json!({
                "project_id": "p1", "publish_domain": "push.example.com", "app": "live",
                "stream": camera, "record_format": format, "task_id": format!("task-{camera}"),
            });
            let with = |fields: Value| {
                let mut event = base.clone();
                for (k, v) in fields.as_object().unwrap() {
                    event[k] = v.clone();
                }
                event
            };
            for k in 0..FILES {
                let job = format!("{camera}-{format}-{k}");
                let start = t0() + Duration::minutes(FILE_MINUTES * k);
                let end = start + Duration::minutes(FILE_MINUTES);
                let last = k == FILES - 1;
                let mut started =
                    with(json!({"event_type": "RECORD_NEW_FILE_START", "job_id": job}));
                let timeless = rng.random_bool(0.3);
                if !timeless {
                    started["start_time"] = json!(rfc3339(start));
                    if rng.random_bool(0.15) {
                        started.as_object_mut().unwrap().remove("job_id");
                    }
                }
                events.push(started);
                if !last {
                    let mut completed = with(json!({
                        "event_type": "RECORD_FILE_COMPLETE", "job_id": job,
                        "start_time": rfc3339(start), "end_time": rfc3339(end),
                        "asset_id": format!("a-{job}"), "file_size": 1000 + k,
                        "download_url": format!("https://obs.example.com/{job}.mp4"),
                        "record_duration": FILE_MINUTES * 60,
                    }));
                    if rng.random_bool(0.15) {
                        completed.as_object_mut().unwrap().remove("job_id");
                    }
                    events.push(completed);
                }
                // The last file of some series fails: its RECORD_FAILED names it by its
                // start (no job_id), and no file covers its time.
                let failed = last && rng.random_bool(0.3);
                if failed {
                    events.push(with(json!({
                        "event_type": "RECORD_FAILED", "start_time": rfc3339(start),
                    })));
                }
                if !(last && (timeless || failed)) {
                    let end = (!last).then_some(end);
                    let camera = camera.clone();
                    files.push(File {
                        camera,
                        job,
                        start,
                        end,
                    });
                }
            }
            if rng.random_bool(0.5) {
                events.push(with(json!({"event_type": "RECORD_OVER"})));
            }
        }
    }
    let redelivered: Vec<Value> = events.sample(rng, events.len() / 4).cloned().collect();
    events.extend(redelivered);
    events.shuffle(rng);
    (events, files)
}

/// What a match shows of its file: the job, else the asset's job, else nothing (a file
/// announced without `job_id` and not complete).
fn label(r: &Recording) -> String {
    match (r.job_id.as_str(), r.asset_id.strip_prefix("a-")) {
        ("", Some(job)) => job.to_owned(),
        (job, _) => job.to_owned(),
    }
}

async fn many_recordings_shuffled_and_redelivered_are_found_as_recorded(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(2026);
    let (events, files) = lifecycles(&mut rng);
    send(&[&app], &events, 25).await;
    let mut client = app.grpc().await;
    let cameras: Vec<String> = (0..CAMERAS).map(|c| format!("cam_{c:03}")).collect();
    let span = FILES * FILE_MINUTES * 60;

    // An instant: the files covering it, each at its second.
    for _ in 0..60 {
        let camera = cameras.choose(&mut rng).unwrap();
        let at = t0() + Duration::seconds(rng.random_range(-600..span + 600));
        let req = FindRecordingsRequest {
            stream: camera.clone(),
            at: Some(timestamp(at)),
            ..Default::default()
        };
        let found = client.find_recordings(authed(req)).await.unwrap();
        let mut got: Vec<(String, i64)> = found
            .into_inner()
            .matches
            .into_iter()
            .map(|m| (label(&m.recording.unwrap()), m.offset.unwrap().seconds))
            .collect();
        let mut want: Vec<(String, i64)> = files
            .iter()
            .filter(|f| &f.camera == camera && f.start <= at && f.end.is_none_or(|end| at < end))
            .map(|f| (f.job.clone(), (at - f.start).num_seconds()))
            .collect();
        // A file known only by its start shows no job: it must be one of those wanted
        // at its second.
        got.sort();
        want.sort();
        let named: Vec<&(String, i64)> = got.iter().filter(|g| !g.0.is_empty()).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{camera} at {at}: {got:?} against {want:?}"
        );
        assert!(
            named.iter().all(|g| want.contains(g))
                && got.iter().all(|g| want.iter().any(|w| w.1 == g.1)),
            "{camera} at {at}: {got:?} against {want:?}"
        );
    }

    // A window: ListRecordings holds what FindRecordings finds.
    for _ in 0..30 {
        let camera = cameras.choose(&mut rng).unwrap();
        let start = t0() + Duration::seconds(rng.random_range(-900..span + 600));
        let end = start + Duration::seconds(rng.random_range(1..2400));
        let req = FindRecordingsRequest {
            stream: camera.clone(),
            window_start: Some(timestamp(start)),
            window_end: Some(timestamp(end)),
            ..Default::default()
        };
        let found = client.find_recordings(authed(req)).await.unwrap();
        let mut found: Vec<String> = found
            .into_inner()
            .matches
            .into_iter()
            .map(|m| m.recording.unwrap().id)
            .collect();
        let req = ListRecordingsRequest {
            stream: camera.clone(),
            window_start: Some(timestamp(start)),
            window_end: Some(timestamp(end)),
            page_size: 1000,
            ..Default::default()
        };
        let listed = client.list_recordings(authed(req)).await.unwrap();
        // (A failure without an end is listed, though no file of it is found.)
        let mut listed: Vec<String> = listed
            .into_inner()
            .recordings
            .into_iter()
            .filter(|r| r.end_time.is_some() || r.state() != RecordingState::Failed)
            .map(|r| r.id)
            .collect();
        found.sort();
        listed.sort();
        assert_eq!(listed, found, "{camera} in [{start}, {end})");
    }

    // A follower's copy, kept from WatchEvents alone, is the store's.
    let stored = app.count("SELECT count(*) FROM events").await;
    let mut stream = app.watch(WatchEventsRequest::default()).await;
    let mut copy = BTreeMap::new();
    for _ in 0..stored {
        let m = stream.message().await.unwrap().unwrap();
        for r in m.recording.into_iter().chain(m.ended_recordings) {
            copy.insert(r.id.clone(), r);
        }
    }
    let store: BTreeMap<String, Recording> = app
        .all_recordings()
        .await
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    assert_eq!(copy, store);
}

/// The recordings of `app`, each without what tells when it was stored (its sequences and
/// times of creation and update), by id.
async fn as_recorded(app: &TestApp) -> BTreeMap<String, Recording> {
    app.all_recordings()
        .await
        .into_iter()
        .map(|r| {
            let r = Recording {
                last_sequence: 0,
                create_time: None,
                update_time: None,
                ..r
            };
            (r.id.clone(), r)
        })
        .collect()
}

/// Sends `events` in their order, `at_once` at a time, through `fronts` in turn.
async fn send(fronts: &[&TestApp], events: &[Value], at_once: usize) {
    for chunk in events.chunks(at_once) {
        futures_util::future::join_all(
            chunk
                .iter()
                .zip(fronts.iter().cycle())
                .map(|(e, app)| app.post_ok(e.to_string())),
        )
        .await;
    }
}

/// Order-safe: the same callbacks in other orders (reversed, reshuffled, one at a time or
/// many at once, and on PostgreSQL through two replicas at once) leave the same recordings,
/// field for field and state for state.
async fn the_order_callbacks_arrive_in_changes_no_recording(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut events, _) = lifecycles(&mut rng);
    send(&[&app], &events, 1).await;
    let want = as_recorded(&app).await;
    assert!(want.len() > CAMERAS * FORMATS.len() * (FILES as usize - 1));

    let fresh = || async {
        match &app.backend {
            Backend::Sqlite => spawn_app().await,
            Backend::Postgres { .. } => spawn_postgres_app().await,
        }
    };
    events.reverse();
    let reversed = fresh().await;
    send(&[&reversed], &events, 1).await;
    assert_eq!(as_recorded(&reversed).await, want, "reversed");

    events.shuffle(&mut rng);
    let reshuffled = fresh().await;
    let replica = match reshuffled.backend {
        Backend::Postgres { .. } => Some(spawn_replica(&reshuffled).await),
        Backend::Sqlite => None,
    };
    let fronts: Vec<&TestApp> = std::iter::once(&reshuffled).chain(&replica).collect();
    send(&fronts, &events, 40).await;
    assert_eq!(
        as_recorded(&reshuffled).await,
        want,
        "reshuffled, 40 at once"
    );
}

/// Every page of a listing, concatenated, with the page size it was asked in.
async fn list_all(app: &TestApp, req: &ListRecordingsRequest) -> Vec<Recording> {
    let mut client = app.grpc().await;
    let (mut all, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_recordings(authed(ListRecordingsRequest {
                page_token: token,
                ..req.clone()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(
            page.recordings.len() <= req.page_size as usize,
            "{} on a page of {}",
            page.recordings.len(),
            req.page_size
        );
        all.extend(page.recordings);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// ListRecordings, filtered every way and paged in small pages, holds what its filters
/// pick from all recordings (newest first), and a window's pages what its one page does.
async fn listings_paged_small_hold_what_their_filters_pick(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(11);
    let (events, _) = lifecycles(&mut rng);
    send(&[&app], &events, 25).await;
    let all = app.all_recordings().await;
    let states = [
        RecordingState::Unspecified,
        RecordingState::Recording,
        RecordingState::Complete,
        RecordingState::Failed,
        RecordingState::Ended,
    ];
    let span = FILES * FILE_MINUTES * 60;
    // (Rounds whose answer took more than one page, by kind: no window, a window.)
    let mut paged_over = [0; 2];
    for round in 0..160 {
        let stream = match rng.random_range(0..CAMERAS + 2) {
            c if c < CAMERAS => format!("cam_{c:03}"),
            c if c == CAMERAS => "cam_none".to_owned(),
            _ => String::new(),
        };
        let app_name = ["", "", "live", "other"]
            .choose(&mut rng)
            .unwrap()
            .to_string();
        let state = *states.choose(&mut rng).unwrap();
        let window = rng.random_bool(0.5).then(|| {
            let start = t0() + Duration::seconds(rng.random_range(-900..span + 600));
            (start, start + Duration::seconds(rng.random_range(1..3600)))
        });
        let req = ListRecordingsRequest {
            stream: stream.clone(),
            app: app_name.clone(),
            state: state as i32,
            window_start: window.map(|w| timestamp(w.0)),
            window_end: window.map(|w| timestamp(w.1)),
            page_size: rng.random_range(1..10),
            ..Default::default()
        };
        let paged = list_all(&app, &req).await;
        // What the filters pick: from all recordings, or for a window from the window's
        // single page without the state filter.
        let pool = match window {
            None => all.clone(),
            Some(_) => {
                list_all(
                    &app,
                    &ListRecordingsRequest {
                        state: 0,
                        page_size: 1000,
                        ..req.clone()
                    },
                )
                .await
            }
        };
        let want: Vec<Recording> = pool
            .into_iter()
            .filter(|r| {
                (stream.is_empty() || r.stream == stream)
                    && (app_name.is_empty() || r.app == app_name)
                    && (state == RecordingState::Unspecified || r.state() == state)
            })
            .collect();
        let ids = |rs: &[Recording]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&paged), ids(&want), "round {round}: {req:?}");
        if want.len() > req.page_size as usize {
            paged_over[usize::from(window.is_some())] += 1;
        }
    }
    assert!(paged_over.iter().all(|&n| n >= 10), "{paged_over:?}");
}

/// The same lifecycles recorded `day` days later (earlier if negative): each time shifted,
/// each name of a task or file made that day's own.
fn a_day_later(events: &[Value], day: i64) -> Vec<Value> {
    let mut events = events.to_vec();
    for event in &mut events {
        let event = event.as_object_mut().unwrap();
        for key in ["start_time", "end_time"] {
            if let Some(Value::String(t)) = event.get(key) {
                let t = DateTime::parse_from_rfc3339(t).unwrap().to_utc() + Duration::days(day);
                event.insert(key.to_owned(), json!(rfc3339(t)));
            }
        }
        for key in ["task_id", "job_id", "asset_id", "download_url"] {
            if let Some(Value::String(name)) = event.get(key) {
                let name = format!("{name}-day{day}");
                event.insert(key.to_owned(), json!(name));
            }
        }
    }
    events
}

/// ListRecordings in a window without a stream holds, page after page, what each stream's
/// own window holds, newest first, however far back the window is: past a walk of the
/// newest recordings (100 per stream), the older ones are read from each stream's ranges
/// of files by start, and a page may take from both.
async fn windows_without_a_stream_hold_what_each_streams_window_holds(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(23);
    const DAYS: i64 = 9;
    // Recorded long before it is listed: a window is read from ranges only when it is
    // no longer than the time recorded since it.
    const BACK: i64 = 400;
    let t0 = || t0() - Duration::days(BACK);
    let mut events = Vec::new();
    for day in 0..DAYS {
        events.extend(a_day_later(&lifecycles(&mut rng).0, day - BACK));
    }
    events.shuffle(&mut rng);
    send(&[&app], &events, 40).await;
    let recordings = app.count("SELECT count(*) FROM recordings").await;
    let streams = app.count("SELECT count(*) FROM stream_spans").await;
    // Most windows are past the walk.
    assert_eq!(streams, CAMERAS as i64);
    assert!(recordings > 100 * streams * 3 / 2, "{recordings}");

    // The list order, newest first (`first_sequence` is not in the API).
    let newest_first = app
        .text(match app.backend {
            Backend::Sqlite => {
                "SELECT group_concat(id, ',') FROM \
                 (SELECT id FROM recordings ORDER BY first_sequence DESC)"
            }
            Backend::Postgres { .. } => {
                "SELECT string_agg(id, ',' ORDER BY first_sequence DESC) FROM recordings"
            }
        })
        .await;
    let rank: BTreeMap<String, usize> = newest_first
        .split(',')
        .enumerate()
        .map(|(i, id)| (id.to_owned(), i))
        .collect();

    let states = [
        RecordingState::Unspecified,
        RecordingState::Complete,
        RecordingState::Recording,
    ];
    let span = (DAYS * 24 * 60 + FILES * FILE_MINUTES) * 60;
    // (Rounds whose answer took more than one page; rounds with an empty answer.)
    let (mut paged_over, mut empty) = (0, 0);
    for round in 0..60 {
        // Mostly about one day's files; some anywhere (and so mostly empty).
        let start = if rng.random_bool(0.8) {
            let day = Duration::days(rng.random_range(0..DAYS));
            t0() + day + Duration::seconds(rng.random_range(-3600..FILES * FILE_MINUTES * 60))
        } else {
            t0() + Duration::seconds(rng.random_range(-3600..span + 3600))
        };
        // Mostly a few hours; some two days long.
        let longest = if rng.random_bool(0.2) {
            2 * 86_400
        } else {
            3 * 3600
        };
        let end = start + Duration::seconds(rng.random_range(1..longest));
        let req = ListRecordingsRequest {
            app: ["", "", "live", "other"]
                .choose(&mut rng)
                .unwrap()
                .to_string(),
            state: *states.choose(&mut rng).unwrap() as i32,
            window_start: Some(timestamp(start)),
            window_end: Some(timestamp(end)),
            page_size: rng.random_range(1..12),
            ..Default::default()
        };

        let paged = list_all(&app, &req).await;

        let mut want = Vec::new();
        for camera in (0..CAMERAS).map(|c| format!("cam_{c:03}")) {
            let of_stream = ListRecordingsRequest {
                stream: camera,
                page_size: 1000,
                ..req.clone()
            };
            want.extend(list_all(&app, &of_stream).await);
        }
        want.sort_by_key(|r| rank[&r.id]);
        let ids = |rs: &[Recording]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&paged), ids(&want), "round {round}: {req:?}");
        paged_over += usize::from(want.len() > req.page_size as usize);
        empty += usize::from(want.is_empty());
    }
    assert!(
        paged_over >= 20 && empty >= 3,
        "{paged_over} paged over, {empty} empty"
    );
}

/// A window without a stream, paged in pages of 1 to 4, holds exactly the files it
/// overlaps, newest first, where the walk of the newest recordings stops (100 per stream
/// before the page's cursor) and on either side: none lost there, none twice.
async fn a_window_without_a_stream_pages_across_where_its_walk_stops(app: TestApp) {
    const STREAMS: i64 = 3;
    const HOURS: i64 = 150;
    // Recorded long before it is listed (see the test above).
    let t0 = || t0() - Duration::days(400);
    // Hourly files of three cameras, completed in order: every callback a new recording.
    let mut files = Vec::new();
    let mut events = Vec::new();
    for hour in 0..HOURS {
        for camera in 0..STREAMS {
            let start = t0() + Duration::hours(hour);
            files.push((camera, start, start + Duration::hours(1)));
            events.push(json!({
                "project_id": "p1", "publish_domain": "push.example.com", "app": "live",
                "stream": format!("cam_{camera:03}"), "event_type": "RECORD_FILE_COMPLETE",
                "job_id": format!("job-{camera}-{hour}"),
                "start_time": rfc3339(start), "end_time": rfc3339(start + Duration::hours(1)),
            }));
        }
    }
    for event in &events {
        app.post_ok(event.to_string()).await;
    }
    // So the n-th file sent is the recording of sequence n + 1 (the newest, 450), and the
    // first page's walk stops at 450 - 300 = 150: the files of hour 49.
    assert_eq!(
        app.count("SELECT max(first_sequence) FROM recordings")
            .await,
        450
    );
    let walk = 100 * STREAMS;
    let floor_hour = (3 * HOURS - walk - 1) / STREAMS;

    let mut windows = Vec::new();
    for hours in [1, 2, 5] {
        for from in floor_hour - 6..=floor_hour + 1 {
            windows.push((from, hours));
        }
    }
    // And windows longer than the time recorded since them, which walk.
    windows.extend([(0, 1), (HOURS - 1, 1), (-5, 3), (HOURS + 2, 4), (0, HOURS)]);
    windows.extend([(0, 401 * 24), (HOURS - 3, 401 * 24)]);
    for (from, hours) in windows {
        let (ws, we) = (
            t0() + Duration::hours(from),
            t0() + Duration::hours(from + hours),
        );
        let want: Vec<usize> = (0..files.len())
            .rev()
            .filter(|&n| files[n].1 < we && files[n].2 > ws)
            .collect();
        for page_size in 1..=4 {
            let req = ListRecordingsRequest {
                window_start: Some(timestamp(ws)),
                window_end: Some(timestamp(we)),
                page_size,
                ..Default::default()
            };

            let paged = list_all(&app, &req).await;

            let got: Vec<(String, DateTime<Utc>)> = paged
                .iter()
                .map(|r| {
                    let start = r.start_time.as_ref().unwrap();
                    (
                        r.stream.clone(),
                        Utc.timestamp_opt(start.seconds, 0).unwrap(),
                    )
                })
                .collect();
            let want: Vec<(String, DateTime<Utc>)> = want
                .iter()
                .map(|&n| (format!("cam_{:03}", files[n].0), files[n].1))
                .collect();
            assert_eq!(
                got,
                want,
                "hours {from}..{}, pages of {page_size}",
                from + hours
            );
        }
    }
}

/// WatchEvents from any cursor, filtered every way, sends exactly the messages an
/// unfiltered follower got live for the events its filters pick, in order, each the same
/// (the recording as it was right after its event, the files a RECORD_OVER ended): a
/// replay is what was sent live.
async fn filtered_watches_from_any_cursor_replay_what_was_sent_live(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(5);
    let (events, _) = lifecycles(&mut rng);
    let (early, late) = events.split_at(events.len() / 3);
    send(&[&app], early, 25).await;
    let mut live = app.watch(WatchEventsRequest::default()).await;
    send(&[&app], late, 25).await;
    let stored = app.count("SELECT count(*) FROM events").await;
    let mut sent = Vec::new();
    for _ in 0..stored {
        sent.push(live.message().await.unwrap().unwrap());
    }
    assert_eq!(sent.last().unwrap().sequence, stored);

    let types = [
        "RECORD_NEW_FILE_START",
        "RECORD_FILE_COMPLETE",
        "RECORD_OVER",
        "RECORD_FAILED",
    ];
    let mut compared = 0;
    for round in 0..24 {
        let stream = match rng.random_range(0..CAMERAS + 2) {
            c if c < CAMERAS => format!("cam_{c:03}"),
            _ => String::new(),
        };
        let app_name = ["", "live"].choose(&mut rng).unwrap().to_string();
        let event_type = match rng.random_range(0..types.len() + 1) {
            i if i < types.len() => types[i].to_owned(),
            _ => String::new(),
        };
        let req = WatchEventsRequest {
            after_sequence: rng.random_range(0..stored),
            app: app_name.clone(),
            stream: stream.clone(),
            event_type: event_type.clone(),
        };
        let want: Vec<&_> = sent
            .iter()
            .filter(|m| {
                let e = m.event.as_ref().unwrap();
                m.sequence > req.after_sequence
                    && (stream.is_empty() || e.stream == stream)
                    && (app_name.is_empty() || e.app == app_name)
                    && (event_type.is_empty() || e.event_type == event_type)
            })
            .collect();
        let mut watch = app.watch(req.clone()).await;
        for (i, want) in want.iter().enumerate() {
            let got = watch.message().await.unwrap().unwrap();
            assert_eq!(&&got, want, "round {round}, message {i}: {req:?}");
        }
        compared += want.len();
    }
    assert!(compared > 200, "{compared} messages compared");
}

crate::on_both_stores!(
    a_window_without_a_stream_pages_across_where_its_walk_stops,
    windows_without_a_stream_hold_what_each_streams_window_holds,
    filtered_watches_from_any_cursor_replay_what_was_sent_live,
    listings_paged_small_hold_what_their_filters_pick,
    many_recordings_shuffled_and_redelivered_are_found_as_recorded,
    the_order_callbacks_arrive_in_changes_no_recording,
);
