//! FindRecordings: the files of a stream covering an instant or a window.

use super::*;

async fn find_covers_an_instant_start_inclusive_end_exclusive_with_offsets(app: TestApp) {
    post_file(
        &app,
        "cam_f",
        "f1",
        "2026-11-27T08:00:00Z",
        "2026-11-27T09:00:00Z",
    )
    .await;
    post_file(
        &app,
        "cam_f",
        "f2",
        "2026-11-27T09:00:00Z",
        "2026-11-27T10:00:00Z",
    )
    .await;
    post_file(
        &app,
        "cam_other",
        "o1",
        "2026-11-27T08:00:00Z",
        "2026-11-27T10:00:00Z",
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

crate::on_both_stores!(
    find_covers_an_instant_start_inclusive_end_exclusive_with_offsets,
    a_window_with_more_files_than_one_answer_holds_is_refused_not_cut,
    find_includes_a_file_still_recording,
    a_file_still_open_covers_only_up_to_the_next_file_of_its_stream_and_format,
    a_file_still_recording_without_a_start_time_is_found_from_when_it_was_received,
    one_file_known_under_two_identities_is_found_once,
    files_of_two_formats_known_only_by_their_start_are_two_recordings,
    a_file_ended_by_its_task_before_it_completed_covers_up_to_the_end_of_the_task,
);
