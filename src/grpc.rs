//! The tonic adapter: each RPC is `into_inner()` → the service → `map_err(Status::from)`.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::{InterceptedService, Interceptor};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::domain::time::to_timestamp;
use crate::domain::{EventType, Recording};
use crate::pb::v1 as pb;
use crate::pb::v1::recording_event_server::{RecordingEvent, RecordingEventServer};
use crate::service::RecordingService;
use crate::store::{EventFilter, StoredEvent};
use crate::watch;

/// How many events a watcher may have in flight to its client.
const WATCH_BUFFER: usize = 256;

/// The gRPC face of [`RecordingService`].
pub struct GrpcService {
    service: RecordingService,
    /// Turns true when the server shuts down: open watch streams end then.
    stop: tokio::sync::watch::Receiver<bool>,
    /// One permit per open WatchEvents stream, held until the stream is dropped.
    watchers: Arc<tokio::sync::Semaphore>,
    max_watchers: usize,
}

/// The `RecordingEvent` server with its bearer-token check (health and reflection are
/// separate services and stay open). Messages may come and go gzip-compressed (answers are
/// compressed only for a client that says it accepts gzip); a request message, once
/// decompressed, may be at most `max_message_bytes`, the HTTP front's body limit. At most
/// `max_watchers` WatchEvents streams are open at once, over all connections.
pub fn server(
    service: RecordingService,
    auth: Arc<Authenticator>,
    stop: tokio::sync::watch::Receiver<bool>,
    max_message_bytes: usize,
    max_watchers: usize,
) -> InterceptedService<RecordingEventServer<GrpcService>, impl Interceptor + Clone> {
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        if let Err(e) = auth.check_bearer(header) {
            if let Some(call) = req.extensions().get::<CallbackCall>() {
                call.counted();
                crate::service::count_rejected_callback(&e, call.peer());
            }
            return Err(e.into());
        }
        Ok(req)
    };
    let server = RecordingEventServer::new(GrpcService {
        service,
        stop,
        watchers: Arc::new(tokio::sync::Semaphore::new(max_watchers)),
        max_watchers,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max_message_bytes);
    InterceptedService::new(server, check)
}

/// The path of `VodCallBack`.
pub const VOD_CALLBACK_PATH: &str = "/isdp.recording.v1.RecordingEvent/VodCallBack";

pub use crate::grpc_metrics::CallbackCall;

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RecordingEvent for GrpcService {
    async fn vod_call_back(
        &self,
        request: Request<pb::VodCallBackRequest>,
    ) -> Result<Response<pb::VodCallBackReply>, Status> {
        let call = request.extensions().get::<CallbackCall>();
        if let Some(call) = call {
            call.counted();
        }
        let peer = call.and_then(CallbackCall::peer);
        let appended = self
            .service
            .vod_callback(request.into_inner(), None, peer)
            .await?;
        Ok(Response::new(pb::VodCallBackReply {
            status: 0,
            message: "SUCCESS".into(),
            event_id: appended.sequence,
            duplicate: appended.duplicate,
            recording_id: appended.recording_id.unwrap_or_default(),
        }))
    }

    async fn get_recording(
        &self,
        request: Request<pb::GetRecordingRequest>,
    ) -> Result<Response<pb::Recording>, Status> {
        let recording = self.service.get_recording(&request.into_inner().id).await?;
        Ok(Response::new(to_pb(&recording)))
    }

    async fn list_recordings(
        &self,
        request: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        let (page, next_page_token) = self.service.list_recordings(request.into_inner()).await?;
        Ok(Response::new(pb::ListRecordingsResponse {
            recordings: page.iter().map(to_pb).collect(),
            next_page_token,
        }))
    }

    async fn find_recordings(
        &self,
        request: Request<pb::FindRecordingsRequest>,
    ) -> Result<Response<pb::FindRecordingsResponse>, Status> {
        let found = self.service.find_recordings(request.into_inner()).await?;
        let matches = found
            .iter()
            .map(|(r, offset)| pb::RecordingMatch {
                recording: Some(to_pb(r)),
                offset: offset.map(|offset| prost_types::Duration {
                    seconds: offset.num_seconds(),
                    nanos: offset.subsec_nanos(),
                }),
            })
            .collect();
        Ok(Response::new(pb::FindRecordingsResponse { matches }))
    }

    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let req = request.into_inner();
        if req.after_sequence < 0 {
            return Err(
                crate::error::Error::invalid("after_sequence", "must not be negative").into(),
            );
        }
        crate::domain::check_texts(&[
            ("app", &req.app),
            ("stream", &req.stream),
            ("event_type", &req.event_type),
        ])?;
        check_event_type_filter(&req.event_type)?;
        let Ok(watching) = self.watchers.clone().try_acquire_owned() else {
            return Err(crate::error::Error::new(
                crate::error::Code::ResourceExhausted,
                format!(
                    "watchers: {} WatchEvents streams are open, the most this server takes \
                     (--max-watchers); retry later",
                    self.max_watchers
                ),
            )
            .into());
        };
        let opt = |s: String| Some(s).filter(|s| !s.is_empty());
        let filter = EventFilter {
            app: opt(req.app),
            stream: opt(req.stream),
            event_type: opt(req.event_type),
        };
        let rx = watch::watch(
            self.service.store().clone(),
            req.after_sequence,
            filter,
            WATCH_BUFFER,
            self.stop.clone(),
        );
        // The stream's end is logged outside this call's task: within its request id.
        let id = crate::request_id::current_header();
        // The permit goes with the stream: freed once the client is gone.
        let stream = ReceiverStream::new(rx).map(move |item| {
            let _watching = &watching;
            match item {
                Ok(event) => Ok(event_to_pb(&event)),
                Err(e) => crate::request_id::sync_scope(id.clone(), || Err(Status::from(e))),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// An `event_type` filter is matched exactly, so that types this version does not know
/// can be followed as Huawei sends them. A known type in other letter case would match
/// nothing, silently, forever: refused, naming the spelling that matches.
fn check_event_type_filter(filter: &str) -> Result<(), crate::error::Error> {
    if !matches!(EventType::parse(filter), EventType::Other(_)) {
        return Ok(());
    }
    let upper = filter.to_ascii_uppercase();
    if matches!(EventType::parse(&upper), EventType::Other(_)) {
        return Ok(());
    }
    Err(crate::error::Error::invalid(
        "event_type",
        format!(
            "`{filter}` would match no event: types are matched exactly, and Huawei's are upper case (`{upper}`)"
        ),
    ))
}

fn event_to_pb(e: &StoredEvent) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse {
        sequence: e.sequence,
        event: Some(e.callback.to_request()),
        recording: e.recording.as_ref().map(to_pb),
        receive_time: Some(to_timestamp(e.received_at)),
        ended_recordings: e.ended.files.iter().map(to_pb).collect(),
        ended_recordings_truncated: e.ended.truncated,
    }
}

/// A domain recording as the proto message.
pub fn to_pb(r: &Recording) -> pb::Recording {
    pb::Recording {
        id: r.id.clone(),
        state: r.state as i32,
        project_id: r.project_id.clone(),
        publish_domain: r.publish_domain.clone(),
        app: r.app.clone(),
        stream: r.stream.clone(),
        record_format: r.record_format.clone(),
        task_id: r.task_id.clone(),
        job_id: r.job_id.clone(),
        download_url: r.download_url.clone(),
        asset_id: r.asset_id.clone(),
        play_url: r.play_url.clone(),
        file_size: r.file_size,
        record_duration: r.record_duration,
        start_time: r.start_time.map(to_timestamp),
        end_time: r.end_time.map(to_timestamp),
        width: r.width,
        height: r.height,
        obs_location: r.obs_location.clone(),
        obs_bucket: r.obs_bucket.clone(),
        obs_object: r.obs_object.clone(),
        last_sequence: r.last_sequence,
        create_time: Some(to_timestamp(r.create_time)),
        update_time: Some(to_timestamp(r.update_time)),
    }
}
