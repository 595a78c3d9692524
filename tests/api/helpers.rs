//! `spawn_app()` and typed request helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use recording_events::config::Settings;
use recording_events::pb::v1::recording_event_client::RecordingEventClient;
use recording_events::startup::Application;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-token-0123456789";
pub const CALLBACK: &str = "/openapi/v1/ivmAlarm/Live/vodCallBack";

/// A sample payload from tests/payloads.
pub fn payload(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A payload as a JSON value, to edit.
pub fn payload_json(name: &str) -> Value {
    serde_json::from_str(&payload(name)).unwrap()
}

/// A running application and the clients to talk to it.
pub struct TestApp {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub db_path: PathBuf,
    pub dir: TempDir,
    http: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// An HTTP reply with its body parsed as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the failure envelope: status 1, the error code, a message starting with
    /// `message_prefix`.
    pub fn assert_error(&self, status: u16, code: &str, message_prefix: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.body["status"], 1, "{:?}", self.body);
        assert_eq!(self.body["error"], code, "{:?}", self.body);
        assert!(self.body["data"].is_null(), "{:?}", self.body);
        let message = self.body["message"].as_str().unwrap();
        assert!(
            message.starts_with(message_prefix),
            "message {message:?} should start with {message_prefix:?}"
        );
        assert!(self.body["timestamp"].is_string());
    }

    /// Asserts the success envelope.
    pub fn assert_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        assert_eq!(self.body["status"], 0, "{:?}", self.body);
        assert_eq!(self.body["message"], "SUCCESS");
        assert!(self.body["error"].is_null());
        assert_eq!(self.body["data"], "ok");
    }
}

/// Starts the application on a fresh database with the test token.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the application after `configure` adjusts the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    start(dir, configure).await
}

async fn start(dir: TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
    recording_events::telemetry::init("warn");
    let db_path = dir.path().join("events.db");
    let mut settings = Settings::for_tests(&format!("sqlite://{}", db_path.display()), TOKEN);
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let (http_addr, grpc_addr) = (app.http_addr(), app.grpc_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        http_addr,
        grpc_addr,
        db_path,
        dir,
        http: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.shutdown().await;
        let dir = tempfile::tempdir().unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        start(old, |_| {}).await
    }

    /// Stops the server gracefully and waits until it has stopped.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Any HTTP request.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http_addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .http
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// POSTs a callback as Huawei would, with the test token.
    pub async fn post_callback(&self, body: impl Into<Bytes>) -> Reply {
        let auth = format!("bearer {TOKEN}");
        self.request(
            Method::POST,
            CALLBACK,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            body,
        )
        .await
    }

    /// POSTs a callback and asserts it was acknowledged.
    pub async fn post_ok(&self, body: impl Into<Bytes>) {
        self.post_callback(body).await.assert_ok();
    }

    /// A tonic client (add the token with [`authed`]).
    pub async fn grpc(&self) -> RecordingEventClient<Channel> {
        RecordingEventClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .unwrap()
    }

    /// A raw gRPC channel (health, reflection).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Counts rows in a table of the live database, read directly from the file.
    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.db_path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A request with the test token.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req
}

/// The seed example as a gRPC request.
pub fn seed_request() -> recording_events::pb::v1::VodCallBackRequest {
    serde_json::from_str(&payload("seed_example.json")).unwrap()
}
