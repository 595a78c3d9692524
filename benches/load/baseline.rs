//! The baselines: a bare hyper server answering the callback POST with a fixed 200, and a
//! bare tonic server answering VodCallBack without storing. Run as child processes of
//! the benchmark binary (`--serve-hyper`, `--serve-tonic`) so they are measured the same
//! way as the service.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use recording_events::pb::v1 as pb;
use recording_events::pb::v1::recording_event_server::{RecordingEvent, RecordingEventServer};
use tonic::{Request, Response, Status};

const REPLY: &str = r#"{"status":0,"message":"SUCCESS","error":null,"data":"ok","timestamp":"2026-11-28T10:00:00.000+0000"}"#;

pub async fn serve_hyper() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("http listening on {}", listener.local_addr().unwrap());
    eprintln!("baseline listening");
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                // Read the body like the service does, then answer.
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(REPLY.as_bytes())))
                        .unwrap(),
                )
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Bare;

#[tonic::async_trait]
impl RecordingEvent for Bare {
    async fn vod_call_back(
        &self,
        _: Request<pb::VodCallBackRequest>,
    ) -> Result<Response<pb::VodCallBackReply>, Status> {
        Ok(Response::new(pb::VodCallBackReply {
            status: 0,
            message: "SUCCESS".into(),
            event_id: 1,
            duplicate: false,
            recording_id: String::new(),
        }))
    }
    async fn get_recording(
        &self,
        _: Request<pb::GetRecordingRequest>,
    ) -> Result<Response<pb::Recording>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn list_recordings(
        &self,
        _: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn find_recordings(
        &self,
        _: Request<pb::FindRecordingsRequest>,
    ) -> Result<Response<pb::FindRecordingsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    type WatchEventsStream = tokio_stream::Empty<Result<pb::WatchEventsResponse, Status>>;
    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

pub async fn serve_tonic() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("grpc listening on {}", listener.local_addr().unwrap());
    eprintln!("baseline listening");
    tonic::transport::Server::builder()
        .add_service(RecordingEventServer::new(Bare))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .unwrap();
}
