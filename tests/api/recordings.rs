//! Recordings: the lifecycle fold (in and out of order), listing, paging, and finding.

use recording_events::pb::v1::{
    FindRecordingsRequest, GetRecordingRequest, ListRecordingsRequest, Recording, RecordingMatch,
    RecordingState,
};
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{TestApp, authed, payload, payload_json};

fn ts(s: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A FILE_COMPLETE for `stream` covering [start, end).
fn file(stream: &str, job: &str, start: &str, end: &str) -> Value {
    let mut body = payload_json("lifecycle_3_record_file_complete.json");
    body["stream"] = json!(stream);
    body["job_id"] = json!(job);
    body["start_time"] = json!(start);
    body["end_time"] = json!(end);
    body
}

/// A NEW_FILE_START of `stream` in `format`, with its `start_time` when given.
fn opened(stream: &str, job: &str, format: &str, start: Option<&str>) -> String {
    let mut body = payload_json("lifecycle_2_record_new_file_start.json");
    body["stream"] = json!(stream);
    body["job_id"] = json!(job);
    body["record_format"] = json!(format);
    match start {
        Some(start) => body["start_time"] = json!(start),
        None => drop(body.as_object_mut().unwrap().remove("start_time")),
    }
    body.to_string()
}

/// [`opened`] in a task of its own (not the payloads' task, which a test may have ended).
fn opened_in_own_task(stream: &str, job: &str, start: Option<&str>) -> String {
    let mut body: Value = serde_json::from_str(&opened(stream, job, "MP4", start)).unwrap();
    body["task_id"] = json!("a-task-still-recording");
    body.to_string()
}

/// On `cam_o`: MP4 file j1, begun at 08:00, whose FILE_COMPLETE never came, and j2, the
/// next MP4 file of that stream, from 09:00 to 10:00.
async fn j1_left_open_then_j2(app: &TestApp) {
    app.post_ok(opened_in_own_task(
        "cam_o",
        "j1",
        Some("2026-11-27T08:00:00Z"),
    ))
    .await;
    app.post_ok(completed(
        "cam_o",
        "j2",
        "MP4",
        "2026-11-27T09:00:00Z",
        "2026-11-27T10:00:00Z",
    ))
    .await;
}

/// A FILE_COMPLETE of `stream` in `format` covering [start, end).
fn completed(stream: &str, job: &str, format: &str, start: &str, end: &str) -> String {
    let mut body = file(stream, job, start, end);
    body["record_format"] = json!(format);
    body.to_string()
}

/// FindRecordings: its matches, in order.
async fn find_matches(app: &TestApp, req: FindRecordingsRequest) -> Vec<RecordingMatch> {
    let reply = app
        .grpc()
        .await
        .find_recordings(authed(req))
        .await
        .unwrap()
        .into_inner();
    reply.matches
}

/// FindRecordings: each match's job and offset in seconds (None: no offset).
async fn find(app: &TestApp, req: FindRecordingsRequest) -> Vec<(String, Option<i64>)> {
    let matches = find_matches(app, req).await.into_iter();
    matches
        .map(|m| (m.recording.unwrap().job_id, m.offset.map(|o| o.seconds)))
        .collect()
}

fn find_at(stream: &str, t: &str) -> FindRecordingsRequest {
    FindRecordingsRequest {
        stream: stream.into(),
        at: Some(ts(t)),
        ..Default::default()
    }
}

fn find_in(stream: &str, start: &str, end: &str) -> FindRecordingsRequest {
    FindRecordingsRequest {
        stream: stream.into(),
        window_start: Some(ts(start)),
        window_end: Some(ts(end)),
        ..Default::default()
    }
}

/// A FindRecordings match as [`find`] gives it: `job` at `secs` into the file.
fn m(job: &str, secs: i64) -> (String, Option<i64>) {
    (job.to_owned(), Some(secs))
}

/// The job ids of `recs`, in order.
fn jobs(recs: Vec<Recording>) -> Vec<String> {
    recs.into_iter().map(|r| r.job_id).collect()
}

async fn list(app: &TestApp, req: ListRecordingsRequest) -> (Vec<Recording>, String) {
    let reply = app
        .grpc()
        .await
        .list_recordings(authed(req))
        .await
        .unwrap()
        .into_inner();
    (reply.recordings, reply.next_page_token)
}

async fn only_recording(app: &TestApp) -> Recording {
    let (recs, _) = list(app, ListRecordingsRequest::default()).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    recs.into_iter().next().unwrap()
}

async fn lifecycle_in_order_ends_complete_with_all_file_details(app: TestApp) {
    for name in [
        "lifecycle_1_record_start.json",
        "lifecycle_2_record_new_file_start.json",
    ] {
        app.post_ok(payload(name)).await;
    }
    let recording = only_recording(&app).await;
    assert_eq!(recording.state(), RecordingState::Recording);

    app.post_ok(payload("lifecycle_3_record_file_complete.json"))
        .await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;

    let r = only_recording(&app).await;
    assert_eq!(r.state(), RecordingState::Complete);
    assert_eq!(r.job_id, "job-0001");
    assert_eq!(r.task_id, "9d2a6c1e5f7b4a3c8e0d1f2a3b4c5d6e");
    assert_eq!(r.file_size, Some(734_003_200));
    assert_eq!(r.record_duration, Some(3600));
    assert_eq!((r.width, r.height), (Some(1920), Some(1080)));
    assert_eq!(r.start_time, Some(ts("2026-11-27T08:00:00Z")));
    assert_eq!(r.end_time, Some(ts("2026-11-27T09:00:00Z")));
    assert_eq!(r.obs_object, "live/cam_0001/2026-11-27-08-00-00.mp4");
    let got = app
        .grpc()
        .await
        .get_recording(authed(GetRecordingRequest { id: r.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, r);
}

async fn a_late_new_file_start_does_not_downgrade_a_complete_file(app: TestApp) {
    app.post_ok(payload("lifecycle_3_record_file_complete.json"))
        .await;
    let complete = only_recording(&app).await;
    assert_eq!(complete.state(), RecordingState::Complete);
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    app.post_ok(payload("lifecycle_3_record_file_complete.json"))
        .await;

    let r = only_recording(&app).await;
    assert_eq!(r.state(), RecordingState::Complete);
    assert_eq!(r.file_size, Some(734_003_200));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 3);
    // The late notice told nothing new: not even when the file last changed moved.
    assert_eq!(r, complete);
}

async fn record_over_ends_an_open_file_and_a_later_complete_still_completes_it(app: TestApp) {
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    let ended = only_recording(&app).await;
    assert_eq!(ended.state(), RecordingState::Ended);
    assert_eq!(ended.last_sequence, 2, "the RECORD_OVER's sequence");
    app.post_ok(payload("lifecycle_3_record_file_complete.json"))
        .await;

    assert_eq!(only_recording(&app).await.state(), RecordingState::Complete);
}

async fn record_over_leaves_a_complete_file_as_it_was(app: TestApp) {
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;
    app.post_ok(payload("lifecycle_3_record_file_complete.json"))
        .await;
    let complete = only_recording(&app).await;
    assert_eq!(complete.last_sequence, 2);
    app.post_ok(payload("lifecycle_4_record_over.json")).await;

    // Neither its state nor when it last changed: the end of its task changed nothing in it.
    assert_eq!(only_recording(&app).await, complete);
    // A late redelivery of its start still does not downgrade it.
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;
    assert_eq!(only_recording(&app).await, complete);
}

async fn a_new_file_start_after_its_task_is_over_is_born_ended(app: TestApp) {
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;

    assert_eq!(only_recording(&app).await.state(), RecordingState::Ended);
}

async fn a_later_completion_of_the_same_file_extends_it_in_either_order(app: TestApp) {
    // One file completed twice (an HLS file appended to after an interruption): first up
    // to 09:00, then up to 10:30 with more bytes. On cam_x in that order, on cam_y reversed.
    let completion = |stream: &str, end: &str, size: i64| {
        let mut body = file(stream, "j1", "2026-11-27T08:00:00Z", end);
        body["file_size"] = json!(size);
        body.to_string()
    };
    for (stream, order) in [("cam_x", [0, 1]), ("cam_y", [1, 0])] {
        let bodies = [
            completion(stream, "2026-11-27T09:00:00Z", 100),
            completion(stream, "2026-11-27T10:30:00Z", 250),
        ];
        for i in order {
            app.post_ok(bodies[i].clone()).await;
        }
        assert_eq!(
            find(&app, find_at(stream, "2026-11-27T10:00:00Z")).await,
            [m("j1", 7200)],
            "{stream}"
        );
        let (recs, _) = list(
            &app,
            ListRecordingsRequest {
                stream: stream.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(recs.len(), 1, "{stream}: {recs:?}");
        assert_eq!(
            recs[0].end_time,
            Some(ts("2026-11-27T10:30:00Z")),
            "{stream}"
        );
        assert_eq!(recs[0].file_size, Some(250), "{stream}");
    }
}

async fn record_failed_gives_a_failed_recording(app: TestApp) {
    app.post_ok(payload("record_failed.json")).await;

    let r = only_recording(&app).await;
    assert_eq!(r.state(), RecordingState::Failed);
    assert_eq!(r.start_time, Some(ts("2026-11-27T10:00:00Z")));
}

async fn a_failure_of_a_file_known_by_its_start_outweighs_it_in_either_order(app: TestApp) {
    // A RECORD_FAILED names the file by its start (no job_id): on cam_f1 it comes after
    // the file's NEW_FILE_START, on cam_f2 before it. Either way the file failed: no file
    // covers its time, and a window lists the failure alone.
    let failed = |stream: &str| {
        let mut body = payload_json("record_failed.json");
        body["stream"] = json!(stream);
        body["start_time"] = json!("2026-11-27T08:00:00Z");
        body.to_string()
    };
    let started = |stream: &str| opened_in_own_task(stream, "f", Some("2026-11-27T08:00:00Z"));
    app.post_ok(started("cam_f1")).await;
    app.post_ok(failed("cam_f1")).await;
    app.post_ok(failed("cam_f2")).await;
    app.post_ok(started("cam_f2")).await;

    for stream in ["cam_f1", "cam_f2"] {
        assert_eq!(
            find(&app, find_at(stream, "2026-11-27T08:30:00Z")).await,
            []
        );
        let window = ListRecordingsRequest {
            stream: stream.into(),
            window_start: Some(ts("2026-11-27T08:30:00Z")),
            window_end: Some(ts("2026-11-27T08:45:00Z")),
            ..Default::default()
        };
        let (listed, _) = list(&app, window).await;
        let states: Vec<RecordingState> = listed.iter().map(Recording::state).collect();
        assert_eq!(states, [RecordingState::Failed], "{stream}");
    }
}

async fn list_filters_by_stream_state_and_window(app: TestApp) {
    app.post_ok(
        file(
            "cam_a",
            "a1",
            "2026-11-27T08:00:00Z",
            "2026-11-27T09:00:00Z",
        )
        .to_string(),
    )
    .await;
    app.post_ok(
        file(
            "cam_a",
            "a2",
            "2026-11-27T09:00:00Z",
            "2026-11-27T10:00:00Z",
        )
        .to_string(),
    )
    .await;
    app.post_ok(
        file(
            "cam_b",
            "b1",
            "2026-11-27T08:30:00Z",
            "2026-11-27T09:30:00Z",
        )
        .to_string(),
    )
    .await;
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;

    let by_stream = list(
        &app,
        ListRecordingsRequest {
            stream: "cam_a".into(),
            ..Default::default()
        },
    )
    .await
    .0;
    let recording = list(
        &app,
        ListRecordingsRequest {
            state: RecordingState::Recording as i32,
            ..Default::default()
        },
    )
    .await
    .0;
    let window = list(
        &app,
        ListRecordingsRequest {
            window_start: Some(ts("2026-11-27T09:15:00Z")),
            window_end: Some(ts("2026-11-27T09:45:00Z")),
            state: RecordingState::Complete as i32,
            ..Default::default()
        },
    )
    .await
    .0;
    let other_project = list(
        &app,
        ListRecordingsRequest {
            project_id: "nope".into(),
            ..Default::default()
        },
    )
    .await
    .0;

    assert_eq!(jobs(by_stream), ["a2", "a1"], "newest first");
    assert_eq!(jobs(recording), ["job-0001"]);
    assert_eq!(jobs(window), ["b1", "a2"]);
    assert!(other_project.is_empty());
}

async fn paging_is_stable_while_new_recordings_arrive(app: TestApp) {
    for i in 0..25 {
        app.post_ok(
            file(
                "cam_p",
                &format!("j{i:02}"),
                "2026-11-27T08:00:00Z",
                "2026-11-27T09:00:00Z",
            )
            .to_string(),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (page, next) = list(
            &app,
            ListRecordingsRequest {
                stream: "cam_p".into(),
                page_size: 10,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        seen.extend(page.into_iter().map(|r| r.job_id));
        // Newer recordings arrive between pages; they belong before page one.
        app.post_ok(
            file(
                "cam_p",
                &format!("new{pages}"),
                "2026-11-27T08:00:00Z",
                "2026-11-27T09:00:00Z",
            )
            .to_string(),
        )
        .await;
        if next.is_empty() {
            break;
        }
        token = next;
    }

    let expected: Vec<String> = (0..25).rev().map(|i| format!("j{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

async fn bad_page_sizes_tokens_and_windows_are_invalid_argument(app: TestApp) {
    let mut client = app.grpc().await;
    let cases = [
        (
            ListRecordingsRequest {
                page_size: 5000,
                ..Default::default()
            },
            "page_size: must be at most 1000",
        ),
        (
            ListRecordingsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size: must not be negative",
        ),
        (
            ListRecordingsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token: is not a token",
        ),
        (
            ListRecordingsRequest {
                page_token: hex::encode("v1:10:000000000000"),
                ..Default::default()
            },
            "page_token: was issued for other filters",
        ),
        (
            ListRecordingsRequest {
                state: 42,
                ..Default::default()
            },
            "state: unknown state 42",
        ),
        (
            ListRecordingsRequest {
                window_start: Some(ts("2026-11-27T10:00:00Z")),
                window_end: Some(ts("2026-11-27T09:00:00Z")),
                ..Default::default()
            },
            "window_end: must be after window_start",
        ),
    ];
    for (req, message) in cases {
        let status = client.list_recordings(authed(req)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(message), "{status:?}");
    }
    let find_cases = [
        (
            FindRecordingsRequest {
                at: Some(ts("2026-11-27T08:00:00Z")),
                ..Default::default()
            },
            "stream: is required",
        ),
        (
            FindRecordingsRequest {
                stream: "s".into(),
                ..Default::default()
            },
            "at: required",
        ),
        (
            FindRecordingsRequest {
                stream: "s".into(),
                at: Some(ts("2026-11-27T08:00:00Z")),
                window_start: Some(ts("2026-11-27T08:00:00Z")),
                ..Default::default()
            },
            "at: give either",
        ),
        (
            FindRecordingsRequest {
                stream: "s".into(),
                window_start: Some(ts("2026-11-27T08:00:00Z")),
                ..Default::default()
            },
            "window_end: is required",
        ),
        (
            // Past protobuf's year 9999, near the end of what a time can hold at all.
            FindRecordingsRequest {
                stream: "s".into(),
                at: Some(prost_types::Timestamp {
                    seconds: 8_210_266_876_799,
                    nanos: 999_999_999,
                }),
                ..Default::default()
            },
            "at: 8210266876799s 999999999ns is not a valid timestamp (years 1 to 9999",
        ),
        (
            FindRecordingsRequest {
                stream: "s".into(),
                window_start: Some(prost_types::Timestamp {
                    seconds: -62_135_596_801,
                    nanos: 0,
                }),
                window_end: Some(ts("2026-11-27T08:00:00Z")),
                ..Default::default()
            },
            "window_start: -62135596801s 0ns is not a valid timestamp",
        ),
    ];
    for (req, message) in find_cases {
        let status = client.find_recordings(authed(req)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(message), "{status:?}");
    }
    let mut get = async |id: String| {
        client
            .get_recording(authed(GetRecordingRequest { id }))
            .await
            .unwrap_err()
    };
    let absent = "0123456789abcdef0123456789abcdef";
    let status = get(absent.to_uppercase()).await;
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("id: no recording `{absent}`"));
    let resource = tonic_types::StatusExt::get_details_resource_info(&status).unwrap();
    assert_eq!(
        resource.resource_type,
        "type.googleapis.com/isdp.recording.v1.Recording"
    );
    assert_eq!(resource.resource_name, absent);
    // Not an id at all: said so (a long one cut in the middle, as every message).
    let status = get("nope".into()).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "id: `nope` is not a recording id: those are 32 hex digits, as a Recording's `id`"
    );
    let status = get("x".repeat(5000)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().len() < 700
            && status.message().starts_with("id: `xxx")
            && status.message().ends_with(
                "xxx` is not a recording id: those are 32 hex digits, as a Recording's `id`"
            ),
        "{status:?}"
    );
}

async fn find_covers_an_instant_start_inclusive_end_exclusive_with_offsets(app: TestApp) {
    app.post_ok(
        file(
            "cam_f",
            "f1",
            "2026-11-27T08:00:00Z",
            "2026-11-27T09:00:00Z",
        )
        .to_string(),
    )
    .await;
    app.post_ok(
        file(
            "cam_f",
            "f2",
            "2026-11-27T09:00:00Z",
            "2026-11-27T10:00:00Z",
        )
        .to_string(),
    )
    .await;
    app.post_ok(
        file(
            "cam_other",
            "o1",
            "2026-11-27T08:00:00Z",
            "2026-11-27T10:00:00Z",
        )
        .to_string(),
    )
    .await;
    let at = |t: &str| find_at("cam_f", t);

    assert_eq!(find(&app, at("2026-11-27T08:00:00Z")).await, [m("f1", 0)]);
    assert_eq!(
        find(&app, at("2026-11-27T08:33:10Z")).await,
        [m("f1", 1990)]
    );
    assert_eq!(find(&app, at("2026-11-27T09:00:00Z")).await, [m("f2", 0)]);
    assert_eq!(
        find(&app, at("2026-11-27T08:59:59Z")).await,
        [m("f1", 3599)]
    );
    assert!(find(&app, at("2026-11-27T10:00:00Z")).await.is_empty());
    assert!(find(&app, at("2026-11-27T07:59:59Z")).await.is_empty());
    let window = find_in("cam_f", "2026-11-27T08:30:00Z", "2026-11-27T09:30:00Z");
    assert_eq!(find(&app, window).await, [m("f1", 1800), m("f2", 0)]);
}

async fn a_window_with_more_files_than_one_answer_holds_is_refused_not_cut(app: TestApp) {
    // 1,001 one-minute files of cam_w from midnight: one more than an answer holds.
    let minute = |i: i64| {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z").unwrap()
            + chrono::Duration::minutes(i);
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let files: Vec<i64> = (0..1001).collect();
    for chunk in files.chunks(50) {
        futures_util::future::join_all(chunk.iter().map(|&i| {
            app.post_ok(file("cam_w", &format!("w{i}"), &minute(i), &minute(i + 1)).to_string())
        }))
        .await;
    }

    let all = find_in("cam_w", &minute(0), &minute(1001));
    let status = app
        .grpc()
        .await
        .find_recordings(authed(all))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "window_end: more than 1000 recordings of this stream fall in it; narrow the window, \
         or page through ListRecordings with the same stream and window"
    );
    // Exactly as many as an answer holds: all of them, oldest first.
    let most = find(&app, find_in("cam_w", &minute(0), &minute(1000))).await;
    assert_eq!(most.len(), 1000);
    assert_eq!((&most[0], &most[999]), (&m("w0", 0), &m("w999", 0)));
    // What the refusal advises gives all 1,001.
    let page = |page_token: String| ListRecordingsRequest {
        stream: "cam_w".into(),
        window_start: Some(ts(&minute(0))),
        window_end: Some(ts(&minute(1001))),
        page_size: 1000,
        page_token,
        ..Default::default()
    };
    let (first, token) = list(&app, page(String::new())).await;
    let (rest, end) = list(&app, page(token)).await;
    assert_eq!(
        (first.len(), jobs(rest), end),
        (1000, vec!["w0".to_owned()], String::new())
    );
}

async fn find_includes_a_file_still_recording(app: TestApp) {
    app.post_ok(payload("lifecycle_2_record_new_file_start.json"))
        .await;

    assert_eq!(
        find(&app, find_at("cam_0001", "2026-11-27T08:10:00Z")).await,
        [("job-0001".to_owned(), Some(600))]
    );
}

async fn a_file_still_open_covers_only_up_to_the_next_file_of_its_stream_and_format(app: TestApp) {
    // An HLS file of the same stream, recorded alongside, is still open.
    j1_left_open_then_j2(&app).await;
    app.post_ok(opened("cam_o", "h1", "HLS", Some("2026-11-27T08:30:00Z")))
        .await;

    assert_eq!(
        find(&app, find_at("cam_o", "2026-11-27T08:45:00Z")).await,
        [m("j1", 2700), m("h1", 900)]
    );
    assert_eq!(
        find(&app, find_at("cam_o", "2026-11-27T08:59:59Z")).await,
        [m("j1", 3599), m("h1", 1799)]
    );
    // From 09:00 on, j1 is no longer what the MP4 series is recording.
    assert_eq!(
        find(&app, find_at("cam_o", "2026-11-27T09:30:00Z")).await,
        [m("h1", 3600), m("j2", 1800)]
    );
    assert_eq!(
        find(&app, find_at("cam_o", "2026-11-28T09:30:00Z")).await,
        [m("h1", 90000)]
    );
    assert_eq!(
        find(
            &app,
            find_in("cam_o", "2026-11-27T08:50:00Z", "2026-11-27T09:10:00Z")
        )
        .await,
        [m("j1", 3000), m("h1", 1200), m("j2", 0)]
    );
    assert_eq!(
        find(
            &app,
            find_in("cam_o", "2026-11-27T09:00:00Z", "2026-11-27T09:10:00Z")
        )
        .await,
        [m("h1", 1800), m("j2", 0)]
    );

    // A file whose format was not sent is ended by the stream's next file of any format.
    app.post_ok(opened("cam_u", "u1", "", Some("2026-11-27T08:00:00Z")))
        .await;
    app.post_ok(completed(
        "cam_u",
        "u2",
        "FLV",
        "2026-11-27T09:00:00Z",
        "2026-11-27T10:00:00Z",
    ))
    .await;
    assert_eq!(
        find(&app, find_at("cam_u", "2026-11-27T09:30:00Z")).await,
        [m("u2", 1800)]
    );
}

async fn one_file_known_under_two_identities_is_found_once(app: TestApp) {
    let without_job = |body: String| {
        let mut body: Value = serde_json::from_str(&body).unwrap();
        body.as_object_mut().unwrap().remove("job_id");
        body.to_string()
    };
    // cam_t's 08:00 file: announced without a job_id (so known by its start), completed
    // with only an asset_id (so known by that): two recordings of one file.
    app.post_ok(without_job(opened_in_own_task(
        "cam_t",
        "",
        Some("2026-11-27T08:00:00Z"),
    )))
    .await;
    let mut done = file("cam_t", "", "2026-11-27T08:00:00Z", "2026-11-27T09:00:00Z");
    done["asset_id"] = json!("asset-t1");
    app.post_ok(without_job(done.to_string())).await;
    // cam_u's 10:00 file, announced twice: without a job_id, then with one.
    app.post_ok(without_job(opened_in_own_task(
        "cam_u",
        "",
        Some("2026-11-27T10:00:00Z"),
    )))
    .await;
    app.post_ok(opened_in_own_task(
        "cam_u",
        "u1",
        Some("2026-11-27T10:00:00Z"),
    ))
    .await;

    let found = async |req: FindRecordingsRequest| -> Vec<(RecordingState, String, String)> {
        let matches = find_matches(&app, req).await.into_iter();
        matches
            .map(|m| m.recording.unwrap())
            .map(|r| (r.state(), r.asset_id, r.job_id))
            .collect()
    };
    let complete = (
        RecordingState::Complete,
        "asset-t1".to_owned(),
        String::new(),
    );
    assert_eq!(
        found(find_at("cam_t", "2026-11-27T08:30:00Z")).await,
        std::slice::from_ref(&complete)
    );
    assert_eq!(
        found(find_in(
            "cam_t",
            "2026-11-27T07:00:00Z",
            "2026-11-27T12:00:00Z"
        ))
        .await,
        [complete]
    );
    assert!(
        found(find_at("cam_t", "2026-11-27T09:30:00Z"))
            .await
            .is_empty()
    );
    assert_eq!(
        found(find_at("cam_u", "2026-11-27T10:30:00Z")).await,
        [(RecordingState::Recording, String::new(), "u1".to_owned())]
    );
    // ListRecordings' window places them as FindRecordings does.
    let window = ListRecordingsRequest {
        stream: "cam_t".into(),
        window_start: Some(ts("2026-11-27T08:30:00Z")),
        window_end: Some(ts("2026-11-27T08:45:00Z")),
        ..Default::default()
    };
    let (listed, _) = list(&app, window).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].asset_id, "asset-t1");
}

async fn files_of_two_formats_known_only_by_their_start_are_two_recordings(app: TestApp) {
    // cam_2f records HLS and MP4: each begins a file at 08:00, announced without job_id,
    // so each is known by its start alone.
    for format in ["HLS", "MP4"] {
        let mut body: Value =
            serde_json::from_str(&opened("cam_2f", "", format, Some("2026-11-27T08:00:00Z")))
                .unwrap();
        body.as_object_mut().unwrap().remove("job_id");
        app.post_ok(body.to_string()).await;
    }
    let mut formats: Vec<(String, RecordingState)> =
        find_matches(&app, find_at("cam_2f", "2026-11-27T08:30:00Z"))
            .await
            .into_iter()
            .map(|m| m.recording.unwrap())
            .map(|r| (r.record_format.clone(), r.state()))
            .collect();
    formats.sort();
    assert_eq!(
        formats,
        [
            ("HLS".to_owned(), RecordingState::Recording),
            ("MP4".to_owned(), RecordingState::Recording)
        ]
    );
}

async fn a_file_still_recording_without_a_start_time_is_found_from_when_it_was_received(
    app: TestApp,
) {
    // Huawei may send a file's times only with its FILE_COMPLETE.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    app.post_ok(opened("cam_n", "n1", "MP4", None)).await;
    let after = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| find_at("cam_n", &t.to_rfc3339());

    assert_eq!(find(&app, at(after)).await, [("n1".to_owned(), None)]);
    assert!(find(&app, at(before)).await.is_empty());

    // Once its next file starts (here also without a start time), it no longer covers
    // what comes after.
    app.post_ok(opened("cam_n", "n2", "MP4", None)).await;
    let later = chrono::Utc::now();
    assert_eq!(find(&app, at(later)).await, [("n2".to_owned(), None)]);
    assert_eq!(find(&app, at(after)).await, [("n1".to_owned(), None)]);

    // Its FILE_COMPLETE brings the real span, and with it the offset.
    app.post_ok(completed(
        "cam_n",
        "n1",
        "MP4",
        "2026-11-27T08:00:00Z",
        "2026-11-27T09:00:00Z",
    ))
    .await;
    assert_eq!(
        find(&app, find_at("cam_n", "2026-11-27T08:00:10Z")).await,
        [("n1".to_owned(), Some(10))]
    );
}

async fn a_file_ended_by_its_task_before_it_completed_covers_up_to_the_end_of_the_task(
    app: TestApp,
) {
    // The task's RECORD_OVER came while e1 was still recording (its FILE_COMPLETE is late
    // or lost): e1 was recording from 08:00 until then, and is ENDED.
    app.post_ok(opened("cam_e", "e1", "MP4", Some("2026-11-27T08:00:00Z")))
        .await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    let over = chrono::Utc::now();
    let (recs, _) = list(&app, ListRecordingsRequest::default()).await;
    assert_eq!(recs[0].state(), RecordingState::Ended);

    assert_eq!(
        find(&app, find_at("cam_e", "2026-11-27T08:30:00Z")).await,
        [("e1".to_owned(), Some(1800))]
    );
    let after = over + chrono::Duration::seconds(1);
    assert!(
        find(&app, find_at("cam_e", &after.to_rfc3339()))
            .await
            .is_empty()
    );
}

async fn a_list_window_places_files_without_their_times_as_find_recordings_does(app: TestApp) {
    // e1 was ENDED by its task's RECORD_OVER before its FILE_COMPLETE came; n1 is
    // recording, its NEW_FILE_START without a start_time.
    app.post_ok(opened("cam_e", "e1", "MP4", Some("2026-11-27T08:00:00Z")))
        .await;
    app.post_ok(payload("lifecycle_4_record_over.json")).await;
    let over = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    app.post_ok(opened_in_own_task("cam_n", "n1", None)).await;
    let recording = chrono::Utc::now();
    let window = |start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>| {
        ListRecordingsRequest {
            window_start: Some(ts(&start.to_rfc3339())),
            window_end: Some(ts(&end.to_rfc3339())),
            ..Default::default()
        }
    };
    let hour = chrono::Duration::hours(1);

    let around_the_end = window(over - hour * 80, over + chrono::Duration::milliseconds(20));
    let since_n1 = window(recording, recording + hour);

    assert_eq!(jobs(list(&app, around_the_end).await.0), ["e1"]);
    assert_eq!(jobs(list(&app, since_n1.clone()).await.0), ["n1"]);
    let of_cam_n = ListRecordingsRequest {
        stream: "cam_n".into(),
        ..since_n1
    };
    assert_eq!(jobs(list(&app, of_cam_n).await.0), ["n1"]);

    j1_left_open_then_j2(&app).await;
    let of_cam_o = |start: &str, end: &str| ListRecordingsRequest {
        stream: "cam_o".into(),
        window_start: Some(ts(start)),
        window_end: Some(ts(end)),
        ..Default::default()
    };
    let before_j2 = of_cam_o("2026-11-27T08:30:00Z", "2026-11-27T08:45:00Z");
    let during_j2 = of_cam_o("2026-11-27T09:30:00Z", "2026-11-27T09:45:00Z");
    assert_eq!(jobs(list(&app, before_j2).await.0), ["j1"]);
    assert_eq!(jobs(list(&app, during_j2).await.0), ["j2"]);

    // e2, the next MP4 file of cam_e, from 09:00 to 10:00: e1, ENDED, was recording only
    // up to e2's start, whenever its task's end came.
    app.post_ok(completed(
        "cam_e",
        "e2",
        "MP4",
        "2026-11-27T09:00:00Z",
        "2026-11-27T10:00:00Z",
    ))
    .await;
    let of_cam_e = |start: &str, end: &str| ListRecordingsRequest {
        stream: "cam_e".into(),
        window_start: Some(ts(start)),
        window_end: Some(ts(end)),
        ..Default::default()
    };
    let (before, during) = (
        ("2026-11-27T08:30:00Z", "2026-11-27T08:45:00Z"),
        ("2026-11-27T09:30:00Z", "2026-11-27T09:45:00Z"),
    );
    assert_eq!(
        jobs(list(&app, of_cam_e(before.0, before.1)).await.0),
        ["e1"]
    );
    assert_eq!(
        jobs(list(&app, of_cam_e(during.0, during.1)).await.0),
        ["e2"]
    );
    assert_eq!(
        find(&app, find_in("cam_e", during.0, during.1)).await,
        [("e2".to_owned(), Some(1800))]
    );
}

crate::on_both_stores!(
    lifecycle_in_order_ends_complete_with_all_file_details,
    a_late_new_file_start_does_not_downgrade_a_complete_file,
    record_over_ends_an_open_file_and_a_later_complete_still_completes_it,
    record_over_leaves_a_complete_file_as_it_was,
    a_new_file_start_after_its_task_is_over_is_born_ended,
    a_later_completion_of_the_same_file_extends_it_in_either_order,
    record_failed_gives_a_failed_recording,
    a_failure_of_a_file_known_by_its_start_outweighs_it_in_either_order,
    list_filters_by_stream_state_and_window,
    paging_is_stable_while_new_recordings_arrive,
    bad_page_sizes_tokens_and_windows_are_invalid_argument,
    find_covers_an_instant_start_inclusive_end_exclusive_with_offsets,
    a_window_with_more_files_than_one_answer_holds_is_refused_not_cut,
    find_includes_a_file_still_recording,
    a_file_still_open_covers_only_up_to_the_next_file_of_its_stream_and_format,
    a_file_still_recording_without_a_start_time_is_found_from_when_it_was_received,
    one_file_known_under_two_identities_is_found_once,
    files_of_two_formats_known_only_by_their_start_are_two_recordings,
    a_file_ended_by_its_task_before_it_completed_covers_up_to_the_end_of_the_task,
    a_list_window_places_files_without_their_times_as_find_recordings_does,
);
