//! The vodCallBack over gRPC, health and reflection.

use recording_events::pb::v1::{GetRecordingRequest, ListRecordingsRequest, WatchEventsRequest};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

use crate::helpers::{authed, seed_request, spawn_app};

#[tokio::test]
async fn a_callback_taken_over_grpc_replays_field_for_field() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;
    let mut sent = seed_request();
    sent.task_id = "task-7".into();
    sent.job_id = "job-9".into();
    sent.auth_timestamp = Some(1_795_770_000);
    sent.event_type = "RECORD_SOMETHING_NEW".into();
    client.vod_call_back(authed(sent.clone())).await.unwrap();

    // Stored as JSON rendered from the request; the replay reads it back from there.
    let mut replay = client
        .watch_events(authed(WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let replayed = replay.message().await.unwrap().unwrap().event.unwrap();

    assert_eq!(replayed, sent);
}

#[tokio::test]
async fn seed_example_over_grpc_is_stored_and_a_redelivery_is_flagged() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;

    let first = client
        .vod_call_back(authed(seed_request()))
        .await
        .unwrap()
        .into_inner();
    let mut again = seed_request();
    again.auth_timestamp = Some(42);
    let second = client
        .vod_call_back(authed(again))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        (first.status, first.message.as_str(), first.duplicate),
        (0, "SUCCESS", false)
    );
    assert!(second.duplicate);
    assert_eq!(second.event_id, first.event_id);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    // Stored with a JSON rendering of the request as its raw body.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events WHERE json_extract(raw_body, '$.stream') = '886_142279'"
        )
        .await,
        1
    );
    let recording = client
        .get_recording(authed(GetRecordingRequest {
            id: first.recording_id,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recording.file_size, Some(33_406_499));
}

#[tokio::test]
async fn invalid_callback_over_grpc_is_invalid_argument_with_the_same_message() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;
    let mut req = seed_request();
    req.publish_domain.clear();

    let status = client.vod_call_back(authed(req)).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "publish_domain: is required and must not be empty"
    );
    let mut req = seed_request();
    req.file_size = Some(-5);
    let status = client.vod_call_back(authed(req)).await.unwrap_err();
    assert_eq!(status.message(), "file_size: must not be negative, got -5");
    // The richer error model: the field and the reason apart, and the envelope's code.
    let details = status.get_error_details();
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "file_size");
    assert_eq!(violations[0].description, "must not be negative, got -5");
    let info = details.error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("INVALID_ARGUMENT", "recording-events")
    );
    assert!(details.retry_info().is_none());
}

#[tokio::test]
async fn grpc_without_or_with_a_wrong_token_is_unauthenticated() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;

    let none = client.vod_call_back(seed_request()).await.unwrap_err();
    let mut wrong = tonic::Request::new(seed_request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    let wrong = client.vod_call_back(wrong).await.unwrap_err();

    assert_eq!(none.code(), Code::Unauthenticated);
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        wrong.message(),
        "authorization: the bearer token is not valid"
    );
    assert_eq!(
        wrong.get_error_details().error_info().unwrap().reason,
        "UNAUTHENTICATED"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn health_reports_serving_without_a_token() {
    let app = spawn_app().await;
    assert_eq!(app.grpc_health().await, ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_v1_lists_the_service_without_a_token() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "isdp.recording.v1.RecordingEvent".into(),
        )),
    };

    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();

    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn reflection_knows_the_error_details_so_grpcurl_can_show_them() {
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let requests = [
        "google.rpc.BadRequest",
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
    ]
    .map(|symbol| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    });

    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    for _ in 0..3 {
        let reply = replies.next().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
            panic!("unexpected reply {reply:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_service_without_a_token() {
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();

    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"isdp.recording.v1.RecordingEvent".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn gzip_compressed_calls_are_taken_and_answered_compressed() {
    let app = spawn_app().await;
    let mut client = app
        .grpc()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);

    let reply = client.vod_call_back(authed(seed_request())).await.unwrap();
    let listed = client
        .list_recordings(authed(ListRecordingsRequest::default()))
        .await
        .unwrap();

    assert_eq!(reply.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(listed.metadata().get("grpc-encoding").unwrap(), "gzip");
    let reply = reply.into_inner();
    assert_eq!((reply.status, reply.duplicate), (0, false));
    let recordings = listed.into_inner().recordings;
    assert_eq!(recordings.len(), 1);
    assert_eq!(recordings[0].asset_id, seed_request().asset_id);
    // A client that does not ask for gzip gets plain answers.
    let plain = app
        .grpc()
        .await
        .list_recordings(authed(ListRecordingsRequest::default()))
        .await
        .unwrap();
    assert!(plain.metadata().get("grpc-encoding").is_none());
}

#[tokio::test]
async fn a_grpc_message_over_the_size_limit_is_refused_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let mut big = seed_request();
    big.play_url = "x".repeat(70 * 1024);

    let plain = app
        .grpc()
        .await
        .vod_call_back(authed(big.clone()))
        .await
        .unwrap_err();
    // Small on the wire, over the limit once decompressed.
    let inflated = app
        .grpc()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .vod_call_back(authed(big))
        .await
        .unwrap_err();
    let after = app.grpc().await.vod_call_back(authed(seed_request())).await;

    assert_eq!(plain.code(), Code::OutOfRange, "{plain:?}");
    assert!(
        plain.message().contains("the limit is: 65536 bytes"),
        "{plain:?}"
    );
    assert_eq!(inflated.code(), Code::ResourceExhausted, "{inflated:?}");
    assert!(
        inflated.message().contains("size limit, of 65536 bytes"),
        "{inflated:?}"
    );
    assert_eq!(after.unwrap().into_inner().status, 0);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn every_grpc_answer_carries_a_request_id_the_callers_own_when_usable() {
    let app = spawn_app().await;
    let mut client = app.grpc().await;
    let fresh = |metadata: &tonic::metadata::MetadataMap| {
        let id = metadata.get("x-request-id").unwrap().to_str().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    };

    let stored = client.vod_call_back(authed(seed_request())).await.unwrap();
    fresh(stored.metadata());

    // Given back, on an error too (refused by the token check before the service).
    let mut refused = tonic::Request::new(seed_request());
    refused
        .metadata_mut()
        .insert("x-request-id", "client-call-42".parse().unwrap());
    let refused = client.vod_call_back(refused).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        refused.metadata().get("x-request-id").unwrap(),
        "client-call-42"
    );

    let mut missing = authed(GetRecordingRequest {
        id: "0123456789abcdef0123456789abcdef".into(),
    });
    missing
        .metadata_mut()
        .insert("x-request-id", "has space".parse().unwrap());
    let missing = client.get_recording(missing).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    fresh(missing.metadata());
}
