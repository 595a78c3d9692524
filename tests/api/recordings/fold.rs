//! The lifecycle fold: one recording per file, in and out of order.

use super::*;

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

crate::on_both_stores!(
    lifecycle_in_order_ends_complete_with_all_file_details,
    a_late_new_file_start_does_not_downgrade_a_complete_file,
    record_over_ends_an_open_file_and_a_later_complete_still_completes_it,
    record_over_leaves_a_complete_file_as_it_was,
    a_new_file_start_after_its_task_is_over_is_born_ended,
    a_later_completion_of_the_same_file_extends_it_in_either_order,
    record_failed_gives_a_failed_recording,
    a_failure_of_a_file_known_by_its_start_outweighs_it_in_either_order,
);
