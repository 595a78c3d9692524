//! Recordings: the lifecycle fold (in and out of order), listing, paging, and finding;
//! the helpers their scenarios share.

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

/// Posts [`file`]: a FILE_COMPLETE for `stream` covering [start, end).
async fn post_file(app: &TestApp, stream: &str, job: &str, start: &str, end: &str) {
    app.post_ok(file(stream, job, start, end).to_string()).await;
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

mod find;
mod fold;
mod list;
