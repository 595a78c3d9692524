//! WatchEvents: replay, then live, without gap or duplicate; resumable.

use std::sync::Arc;

use std::collections::BTreeMap;

use recording_events::pb::v1::{
    Recording, RecordingState, WatchEventsRequest, WatchEventsResponse,
};
use serde_json::json;
use tonic::Streaming;

use crate::helpers::{TestApp, payload, payload_json, spawn_app};

async fn post_distinct(app: &TestApp, from: usize, to: usize) {
    for i in from..to {
        let mut body = payload_json("seed_example.json");
        body["asset_id"] = json!(format!("asset-{i}"));
        app.post_ok(body.to_string()).await;
    }
}

async fn watch(app: &TestApp, req: WatchEventsRequest) -> Streaming<WatchEventsResponse> {
    app.watch(req).await
}

async fn take(stream: &mut Streaming<WatchEventsResponse>, n: usize) -> Vec<WatchEventsResponse> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
            .await
            .expect("the next event arrives")
            .unwrap()
            .expect("the stream stays open");
        out.push(next);
    }
    out
}

async fn replay_then_live_with_concurrent_writers_has_no_gap_and_no_duplicate(app: TestApp) {
    let app = Arc::new(app);
    post_distinct(&app, 0, 40).await;

    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    // Writers keep going while the watcher replays.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(
                async move { post_distinct(&app, 100 + w * 100, 100 + w * 100 + 20).await },
            )
        })
        .collect();
    let events = take(&mut stream, 100).await;
    for w in writers {
        w.await.unwrap();
    }

    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .all(|e| e.event.as_ref().unwrap().stream == "886_142279")
    );
    assert!(
        events
            .iter()
            .all(|e| e.recording.as_ref().unwrap().state() == RecordingState::Complete)
    );
}

async fn a_watcher_resumes_after_a_disconnect_from_its_cursor(app: TestApp) {
    post_distinct(&app, 0, 10).await;
    let mut first = watch(&app, WatchEventsRequest::default()).await;
    let seen = take(&mut first, 6).await;
    let cursor = seen.last().unwrap().sequence;
    drop(first);

    post_distinct(&app, 10, 15).await;
    let mut resumed = app.watch_after(cursor).await;
    let rest = take(&mut resumed, 9).await;
    post_distinct(&app, 15, 17).await;
    let live = take(&mut resumed, 2).await;

    let all: Vec<i64> = seen
        .iter()
        .chain(&rest)
        .chain(&live)
        .map(|e| e.sequence)
        .collect();
    assert_eq!(all, (1..=17).collect::<Vec<_>>());
}

async fn watch_filters_by_event_type_and_carries_the_recording_state_after_each_event(
    app: TestApp,
) {
    let mut stream = watch(
        &app,
        WatchEventsRequest {
            event_type: "RECORD_NEW_FILE_START".into(),
            ..Default::default()
        },
    )
    .await;
    let mut all = watch(&app, WatchEventsRequest::default()).await;

    for name in [
        "lifecycle_1_record_start.json",
        "lifecycle_2_record_new_file_start.json",
        "lifecycle_3_record_file_complete.json",
        "lifecycle_4_record_over.json",
    ] {
        app.post_ok(payload(name)).await;
    }

    let starts = take(&mut stream, 1).await;
    assert_eq!(starts[0].sequence, 2);
    assert_eq!(
        starts[0].recording.as_ref().unwrap().state(),
        RecordingState::Recording
    );
    let every = take(&mut all, 4).await;
    let kinds: Vec<_> = every
        .iter()
        .map(|e| e.event.as_ref().unwrap().event_type.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "RECORD_START",
            "RECORD_NEW_FILE_START",
            "RECORD_FILE_COMPLETE",
            "RECORD_OVER"
        ]
    );
    assert!(every[0].recording.is_none());
    assert_eq!(
        every[2].recording.as_ref().unwrap().state(),
        RecordingState::Complete
    );
}

/// A task's life with the awkward cases: files overlapping, a redelivery, a file ended by
/// RECORD_OVER and completed after it, a file born after RECORD_OVER, a failure, and
/// another task whose completion arrives before its start.
/// All on camera `stream`.
fn awkward_task(stream: &str) -> Vec<String> {
    let edit = |name: &str, changes: serde_json::Value| {
        let mut body = payload_json(name);
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body["stream"] = json!(stream);
        body.to_string()
    };
    let payload = |name: &str| edit(name, json!({}));
    let second_start = json!({"job_id": "job-0002", "start_time": "2026-11-27T09:00:00Z"});
    let second_done = json!({
        "job_id": "job-0002", "asset_id": "asset-0002", "obs_object": "live/cam_0001/2.mp4",
        "start_time": "2026-11-27T09:00:00Z", "end_time": "2026-11-27T10:00:00Z",
    });
    let other_task = json!({
        "task_id": "other-task", "job_id": "job-0101", "asset_id": "asset-0101",
        "obs_object": "live/cam_0001/101.mp4",
    });
    vec![
        payload("lifecycle_1_record_start.json"),
        payload("lifecycle_2_record_new_file_start.json"),
        edit("lifecycle_2_record_new_file_start.json", second_start),
        payload("lifecycle_3_record_file_complete.json"),
        // A redelivery: acknowledged, not stored again.
        payload("lifecycle_3_record_file_complete.json"),
        payload("lifecycle_4_record_over.json"),
        edit("lifecycle_3_record_file_complete.json", second_done),
        edit(
            "lifecycle_2_record_new_file_start.json",
            json!({"job_id": "job-0003", "start_time": "2026-11-27T10:00:00Z"}),
        ),
        payload("record_failed.json"),
        edit("lifecycle_3_record_file_complete.json", other_task.clone()),
        edit("lifecycle_2_record_new_file_start.json", other_task),
    ]
}

/// Keeps a copy of the recordings from WatchEvents messages alone, as a follower does: a
/// message's recording, and the files a RECORD_OVER ended, replace the copy's. Checks at
/// each RECORD_OVER that it ended exactly the copy's files of its task still recording,
/// each now ENDED at the RECORD_OVER's sequence.
fn follow(messages: &[WatchEventsResponse]) -> BTreeMap<String, Recording> {
    let mut copy = BTreeMap::new();
    // The sequence of the event that created each recording.
    let mut created = std::collections::HashMap::new();
    for m in messages {
        if let Some(r) = &m.recording {
            created.entry(r.id.clone()).or_insert(m.sequence);
        }
        let event = m.event.as_ref().unwrap();
        if event.event_type == "RECORD_OVER" {
            let open: Vec<&String> = copy
                .values()
                .filter(|r: &&Recording| {
                    (r.project_id.as_str(), r.task_id.as_str())
                        == (event.project_id.as_str(), event.task_id.as_str())
                        && r.state() == RecordingState::Recording
                })
                .map(|r| &r.id)
                .collect();
            let mut ended: Vec<&String> = m.ended_recordings.iter().map(|r| &r.id).collect();
            ended.sort_unstable();
            assert_eq!(
                ended, open,
                "RECORD_OVER {} ends its task's open files",
                m.sequence
            );
            for r in &m.ended_recordings {
                assert_eq!(
                    (r.state(), r.last_sequence),
                    (RecordingState::Ended, m.sequence)
                );
            }
            assert!(
                m.ended_recordings.is_sorted_by_key(|r| created[&r.id]),
                "oldest first"
            );
        } else {
            assert!(
                m.ended_recordings.is_empty(),
                "only a RECORD_OVER ends files"
            );
        }
        for r in m.recording.iter().chain(&m.ended_recordings) {
            copy.insert(r.id.clone(), r.clone());
        }
    }
    copy
}

/// Every recording of the store by id, as ListRecordings gives them.
async fn all_recordings(app: &TestApp) -> BTreeMap<String, Recording> {
    let all = app.all_recordings().await;
    all.into_iter().map(|r| (r.id.clone(), r)).collect()
}

async fn replayed_events_carry_the_recording_exactly_as_it_was_after_each(app: TestApp) {
    let mut live = watch(&app, WatchEventsRequest::default()).await;
    for body in awkward_task("cam_0001") {
        app.post_ok(body).await;
    }
    let live = take(&mut live, 10).await;
    let mut replay = watch(&app, WatchEventsRequest::default()).await;
    let replayed = take(&mut replay, 10).await;

    // On SQLite the live messages are the writer's own snapshots: the replay folds the
    // same recordings again from the stored events.
    assert_eq!(replayed, live);

    let recording = |seq: i64| {
        replayed[usize::try_from(seq - 1).unwrap()]
            .recording
            .clone()
    };
    // Event 2 started job-0001: then recording, without what its completion (4) added.
    let started = recording(2).unwrap();
    assert_eq!(started.state(), RecordingState::Recording);
    assert_eq!((started.end_time, started.file_size), (None, None));
    assert_eq!((started.last_sequence, started.asset_id.as_str()), (2, ""));
    let completed = recording(4).unwrap();
    assert_eq!(completed.id, started.id);
    assert_eq!(completed.state(), RecordingState::Complete);
    assert_eq!(completed.file_size, Some(734_003_200));
    // job-0002: recording at 3, ended by RECORD_OVER (5), completed at 6.
    let second = recording(3).unwrap();
    assert_eq!(second.state(), RecordingState::Recording);
    assert_eq!(second.end_time, None);
    assert!(recording(5).is_none(), "RECORD_OVER is about the task");
    // ... but it carries job-0002, the one file of its task it ended (job-0001 was
    // complete), as it was then: ENDED at 5, without what its completion (6) added.
    let ended = &replayed[4].ended_recordings;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].id, second.id);
    assert_eq!(
        (ended[0].state(), ended[0].last_sequence),
        (RecordingState::Ended, 5)
    );
    assert_eq!((ended[0].end_time, ended[0].asset_id.as_str()), (None, ""));
    let second_done = recording(6).unwrap();
    assert_eq!(second_done.id, second.id);
    assert_eq!(second_done.state(), RecordingState::Complete);
    assert_eq!(second_done.asset_id, "asset-0002");
    // job-0003 is born ended: its task is over.
    assert_eq!(recording(7).unwrap().state(), RecordingState::Ended);
    assert_eq!(recording(8).unwrap().state(), RecordingState::Failed);
    // The other task: completion first, then the (lower) start, which changes nothing,
    // not even when the recording last changed.
    let (done, start) = (recording(9).unwrap(), recording(10).unwrap());
    assert_eq!(done.state(), RecordingState::Complete);
    assert_eq!(done.last_sequence, 9);
    assert_eq!(start, done);
    // A follower's copy, kept from the messages alone, is the store's.
    assert_eq!(follow(&replayed), all_recordings(&app).await);
}

/// A RECORD_OVER that ends two files which never complete: its message carries both, live
/// and replayed, also when the replay starts after the events that created them.
async fn a_record_over_carries_the_files_it_ended_live_and_replayed(app: TestApp) {
    let mut live = watch(&app, WatchEventsRequest::default()).await;
    let start = |job: &str, format: &str| {
        let mut body = payload_json("lifecycle_2_record_new_file_start.json");
        body["job_id"] = json!(job);
        body["record_format"] = json!(format);
        body.to_string()
    };
    app.post_ok(start("job-mp4", "MP4")).await;
    app.post_ok(start("job-flv", "FLV")).await;
    // Another task's open file is not its to end.
    let mut other = payload_json("lifecycle_2_record_new_file_start.json");
    other["task_id"] = json!("other-task");
    app.post_ok(other.to_string()).await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    let live = take(&mut live, 4).await;
    let ended: Vec<&str> = live[3]
        .ended_recordings
        .iter()
        .map(|r| r.job_id.as_str())
        .collect();
    assert_eq!(ended, ["job-mp4", "job-flv"]);
    assert_eq!(follow(&live), all_recordings(&app).await);

    let mut replay = watch(&app, WatchEventsRequest::default()).await;
    assert_eq!(take(&mut replay, 4).await, live);
    // From after the files' creation: the RECORD_OVER alone, with the same files.
    let mut late = app.watch_after(3).await;
    assert_eq!(take(&mut late, 1).await, live[3..]);
}

/// A RECORD_OVER ending more files than one message should carry (a task whose
/// completions never came) names the oldest 1000 and says there were more, live and
/// replayed alike: a message that large would stop a follower at every resume.
async fn a_record_over_ending_over_1000_files_names_the_oldest_1000(app: TestApp) {
    let files: Vec<usize> = (0..1001).collect();
    for chunk in files.chunks(50) {
        futures_util::future::join_all(chunk.iter().map(|i| {
            let mut body = payload_json("lifecycle_2_record_new_file_start.json");
            body["job_id"] = json!(format!("job-{i:04}"));
            app.post_ok(body.to_string())
        }))
        .await;
    }
    let mut live = app.watch_after(1001).await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    let live = take(&mut live, 1).await.remove(0);
    assert_eq!(live.event.as_ref().unwrap().event_type, "RECORD_OVER");
    assert_eq!(live.ended_recordings.len(), 1000);
    assert!(live.ended_recordings_truncated);
    // The oldest: the file created by the newest event is the one left out.
    let newest = app
        .watch_after(1000)
        .await
        .message()
        .await
        .unwrap()
        .unwrap();
    let left_out = newest.recording.unwrap().id;
    assert!(live.ended_recordings.iter().all(|r| r.id != left_out));
    assert!(
        live.ended_recordings
            .iter()
            .all(|r| r.state() == RecordingState::Ended)
    );

    let replayed = app
        .watch_after(1001)
        .await
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed, live);
}

async fn replay_equals_live_when_tasks_interleave_in_shared_batches(app: TestApp) {
    let app = Arc::new(app);
    let mut live = watch(&app, WatchEventsRequest::default()).await;
    // Four cameras of one task, sent at once: their events share commits, and the first
    // RECORD_OVER to arrive ends the open files of all four.
    let senders: Vec<_> = (0..4)
        .map(|camera| {
            let app = app.clone();
            tokio::spawn(async move {
                for body in awkward_task(&format!("cam_{camera:04}")) {
                    app.post_ok(body).await;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let live = take(&mut live, 40).await;
    let mut replay = watch(&app, WatchEventsRequest::default()).await;
    assert_eq!(take(&mut replay, 40).await, live);
    // The first RECORD_OVER ended the open files of every camera of the task; a
    // follower's copy, kept from the messages alone, is the store's.
    assert_eq!(follow(&live), all_recordings(&app).await);
    assert!(live.iter().any(|m| !m.ended_recordings.is_empty()));
    let ended = live
        .iter()
        .filter_map(|e| e.recording.as_ref())
        .filter(|r| r.state() == RecordingState::Ended)
        .count();
    assert!(ended >= 4, "each camera's job-0003 is born ended: {ended}");
}

#[tokio::test]
async fn a_grpc_client_that_stops_answering_pings_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|s| {
        s.keepalive = (
            std::time::Duration::from_millis(200),
            std::time::Duration::from_millis(200),
        );
    })
    .await;
    // An HTTP/2 client that opens the connection, then never reads or answers again, as
    // a watcher behind a dead network path.
    let mut tcp = tokio::net::TcpStream::connect(app.grpc_addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // By now the server has pinged, waited, and closed: reading drains what it sent,
    // then ends.
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut received),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the server keeps a connection whose client no longer answers"
    );
}

#[tokio::test]
async fn a_stored_body_that_no_longer_parses_does_not_stop_the_replay() {
    let app = spawn_app().await;
    post_distinct(&app, 0, 2).await;
    // As if a later version had tightened validation: the first body is now refused.
    rusqlite::Connection::open(&app.db_path)
        .unwrap()
        .execute(
            "UPDATE events SET raw_body = '{\"width\": -1}' WHERE sequence = 1",
            [],
        )
        .unwrap();

    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    let events = take(&mut stream, 2).await;

    assert_eq!(events[0].sequence, 1);
    let first = events[0].event.as_ref().unwrap();
    assert_eq!(
        (
            first.event_type.as_str(),
            first.app.as_str(),
            first.stream.as_str()
        ),
        ("RECORD_FILE_COMPLETE", "live", "886_142279")
    );
    assert!(first.asset_id.is_empty(), "only the columns are known");
    assert_eq!(events[1].sequence, 2);
    assert_eq!(events[1].event.as_ref().unwrap().asset_id, "asset-1");
    // The body itself is left as it is.
    assert_eq!(
        app.text("SELECT raw_body FROM events WHERE sequence = 1")
            .await,
        "{\"width\": -1}"
    );
}

#[tokio::test]
async fn a_stalled_watcher_never_blocks_ingestion_and_catches_up_without_loss() {
    // More events than the live buffer (4096) plus the stream's own buffers, while the
    // watcher reads nothing: ingestion must go on, and the watcher must then get every
    // event, in order, once.
    const TOTAL: usize = 6000;
    let app = Arc::new(spawn_app().await);
    post_distinct(&app, 0, 1).await;
    let mut stalled = watch(&app, WatchEventsRequest::default()).await;
    let first = take(&mut stalled, 1).await;

    let writers: Vec<_> = (0..32)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut client = app.grpc().await;
                for i in 0..TOTAL / 32 + 1 {
                    let mut req = crate::helpers::seed_request();
                    req.asset_id = format!("lag-{w}-{i}");
                    client
                        .vod_call_back(crate::helpers::authed(req))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        tokio::time::timeout(std::time::Duration::from_secs(120), w)
            .await
            .expect("ingestion is not blocked")
            .unwrap();
    }
    let stored = app.count("SELECT count(*) FROM events").await as usize;
    let rest = take(&mut stalled, stored - 1).await;

    let sequences: Vec<i64> = first.iter().chain(&rest).map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=stored as i64).collect::<Vec<_>>());
}

async fn shutdown_ends_open_watch_streams_with_unavailable(mut app: TestApp) {
    post_distinct(&app, 0, 1).await;
    let mut stream = watch(&app, WatchEventsRequest::default()).await;
    take(&mut stream, 1).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown does not wait for watchers");

    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("resume"), "{status:?}");
}

async fn a_cursor_past_the_newest_event_is_refused_rather_than_waited_on(app: TestApp) {
    post_distinct(&app, 0, 3).await;

    let status = app.watch_refused(10).await;

    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("after_sequence: 10 is past the newest event of this store (3)"),
        "{status:?}"
    );
    // The newest sequence itself is a cursor: the stream waits for what comes next.
    let mut at_newest = app.watch_after(3).await;
    post_distinct(&app, 3, 4).await;
    assert_eq!(take(&mut at_newest, 1).await[0].sequence, 4);
}

async fn a_filter_on_a_known_type_in_lower_case_is_refused_naming_the_spelling(app: TestApp) {
    let request = |event_type: &str| WatchEventsRequest {
        event_type: event_type.into(),
        ..Default::default()
    };
    let mut client = app.grpc().await;

    let status = client
        .watch_events(crate::helpers::authed(request("record_file_complete")))
        .await
        .expect_err("refused");

    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("event_type: `record_file_complete` would match no event")
            && status.message().contains("(`RECORD_FILE_COMPLETE`)"),
        "{status:?}"
    );
    // A type this version does not know is followed as sent.
    let mut unknown = watch(&app, request("RECORD_SNAPSHOT")).await;
    let mut body = payload_json("seed_example.json");
    body["event_type"] = json!("RECORD_SNAPSHOT");
    app.post_ok(body.to_string()).await;
    assert_eq!(
        take(&mut unknown, 1).await[0]
            .event
            .as_ref()
            .unwrap()
            .event_type,
        "RECORD_SNAPSHOT"
    );
}

crate::on_both_stores!(
    a_cursor_past_the_newest_event_is_refused_rather_than_waited_on,
    a_filter_on_a_known_type_in_lower_case_is_refused_naming_the_spelling,
    replay_then_live_with_concurrent_writers_has_no_gap_and_no_duplicate,
    a_watcher_resumes_after_a_disconnect_from_its_cursor,
    watch_filters_by_event_type_and_carries_the_recording_state_after_each_event,
    replayed_events_carry_the_recording_exactly_as_it_was_after_each,
    replay_equals_live_when_tasks_interleave_in_shared_batches,
    a_record_over_carries_the_files_it_ended_live_and_replayed,
    a_record_over_ending_over_1000_files_names_the_oldest_1000,
    shutdown_ends_open_watch_streams_with_unavailable,
);

/// At most --max-watchers streams at once, over all connections: one more is refused with
/// RESOURCE_EXHAUSTED at once, and a closed stream frees its place.
#[tokio::test]
async fn watchers_beyond_the_cap_are_refused_until_one_closes() {
    let app = crate::helpers::spawn_app_with(|s| s.args.max_watchers = 2).await;
    post_distinct(&app, 0, 1).await;
    let mut client = app.grpc().await;
    let mut first = app.watch_after(0).await;
    let mut second = app.watch_after(0).await;
    take(&mut first, 1).await;
    take(&mut second, 1).await;

    let refused = client
        .watch_events(crate::helpers::authed(WatchEventsRequest::default()))
        .await
        .unwrap_err();
    crate::helpers::assert_at_cap(
        &refused,
        "watchers: 2 WatchEvents streams are open, the most this server takes \
         (--max-watchers); retry later",
    );
    // Still following: the refusal took nothing from the open streams.
    post_distinct(&app, 1, 2).await;
    assert_eq!(take(&mut second, 1).await[0].sequence, 2);

    drop(first);
    let mut third = crate::helpers::once_a_place_is_free(|| {
        let mut client = client.clone();
        async move {
            client
                .watch_events(crate::helpers::authed(WatchEventsRequest::default()))
                .await
        }
    })
    .await
    .into_inner();
    let replayed: Vec<i64> = take(&mut third, 2)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(replayed, [1, 2]);
}
