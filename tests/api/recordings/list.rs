//! ListRecordings: filters, windows and paging.

use super::*;

async fn list_filters_by_stream_state_and_window(app: TestApp) {
    post_file(
        &app,
        "cam_a",
        "a1",
        "2026-11-27T08:00:00Z",
        "2026-11-27T09:00:00Z",
    )
    .await;
    post_file(
        &app,
        "cam_a",
        "a2",
        "2026-11-27T09:00:00Z",
        "2026-11-27T10:00:00Z",
    )
    .await;
    post_file(
        &app,
        "cam_b",
        "b1",
        "2026-11-27T08:30:00Z",
        "2026-11-27T09:30:00Z",
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
    list_filters_by_stream_state_and_window,
    paging_is_stable_while_new_recordings_arrive,
    bad_page_sizes_tokens_and_windows_are_invalid_argument,
    a_list_window_places_files_without_their_times_as_find_recordings_does,
);
