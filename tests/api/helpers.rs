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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-token-0123456789";

/// Where the PostgreSQL tests connect (each test gets its own schema there).
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Which store a test app runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temporary directory.
    Sqlite,
    /// A fresh schema in the test PostgreSQL database.
    Postgres { schema: String },
}

/// Generates, for each scenario `async fn name(app: TestApp)`, a module `name` with two
/// tests: `on_sqlite` and `on_postgres`. One contract, both stores.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_sqlite() {
                    super::$scenario($crate::helpers::spawn_app().await).await
                }
                #[tokio::test]
                async fn on_postgres() {
                    super::$scenario($crate::helpers::spawn_postgres_app().await).await
                }
            }
        )*
    };
}
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

/// The seed example as another file of the same camera: a distinct callback, named `asset_id`.
pub fn seed_with_asset(asset_id: &str) -> String {
    let mut body = payload_json("seed_example.json");
    body["asset_id"] = asset_id.into();
    body.to_string()
}

/// A running application and the clients to talk to it.
pub struct TestApp {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub backend: Backend,
    pub db_path: PathBuf,
    pub dir: TempDir,
    http: Client<HttpConnector, Full<Bytes>>,
    /// Each item is a stop signal (a SIGTERM); dropped, the end of them.
    stop: Option<mpsc::UnboundedSender<()>>,
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
    start(dir, Backend::Sqlite, configure).await
}

/// Starts the application on the SQLite database `dir/events.db` (made beforehand).
pub async fn spawn_app_in(dir: TempDir) -> TestApp {
    start(dir, Backend::Sqlite, |_| {}).await
}

/// Starts the application on a fresh schema of the test PostgreSQL database.
pub async fn spawn_postgres_app() -> TestApp {
    spawn_postgres_app_with(|_| {}).await
}

/// [`spawn_postgres_app`] after `configure` adjusts the settings.
pub async fn spawn_postgres_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let schema = fresh_schema().await;
    start(
        tempfile::tempdir().unwrap(),
        Backend::Postgres { schema },
        configure,
    )
    .await
}

/// Starts another replica on the same database as `app`.
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    spawn_replica_with(app, |_| {}).await
}

/// [`spawn_replica`] after `configure` adjusts the settings.
pub async fn spawn_replica_with(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> TestApp {
    start(tempfile::tempdir().unwrap(), app.backend.clone(), configure).await
}

/// The test database URL with `search_path` set to `schema`.
pub fn schema_url(schema: &str) -> String {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A plain connection to `url` (the test database), for a test's own statements.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is needed for these tests ({url}): {e}; start it or set TEST_POSTGRES_URL")
        });
    tokio::spawn(connection);
    client
}

/// Creates `re_test_<unix time>_<pid>_<n>`, after dropping such schemas over an hour old
/// (left by earlier runs; each test's own is dropped with the database, not by the test).
pub async fn fresh_schema() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!(
        "re_test_{now}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let client = connect(&postgres_url()).await;
    let old = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 're\\_test\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in old {
        let name: String = row.get(0);
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if created + 3600 < now {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    schema
}

async fn start(dir: TempDir, backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    recording_events::telemetry::init("warn", recording_events::config::LogFormat::Text);
    let db_path = dir.path().join("events.db");
    let url = match &backend {
        Backend::Sqlite => format!("sqlite://{}", db_path.display()),
        Backend::Postgres { schema } => schema_url(schema),
    };
    let mut settings = Settings::for_tests(&url, TOKEN);
    settings.args.token_file = Some(dir.path().join("token"));
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let (http_addr, grpc_addr) = (app.http_addr(), app.grpc_addr());
    let (stop, stops) = mpsc::unbounded_channel::<()>();
    let server = tokio::spawn(
        app.run_until_stopped(tokio_stream::wrappers::UnboundedReceiverStream::new(stops)),
    );
    TestApp {
        http_addr,
        grpc_addr,
        backend,
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
        start(old, self.backend.clone(), |_| {}).await
    }

    /// Tells the server to stop, as a first SIGTERM does, and returns at once.
    pub fn begin_stop(&self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(());
        }
    }

    /// Stops the server gracefully (ending any `--shutdown-delay`) and waits until it
    /// has stopped.
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

    /// GET `path`, the body as text (for non-JSON routes such as /metrics).
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(format!("http://{}{path}", self.http_addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.http.request(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// POSTs a callback as Huawei would, with the test token.
    /// Sends `head` (a request whose body is promised but not all sent) on a new
    /// connection, then stalls: the raw reply, which must come within 5 s.
    pub async fn stalled_request(&self, head: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.http_addr)
            .await
            .unwrap();
        conn.write_all(head).await.unwrap();
        let mut reply = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut reply))
            .await
            .expect("the server answers a stalled body")
            .unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

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

    /// Every recording of the store (at most 1000: one ListRecordings page), newest first.
    pub async fn all_recordings(&self) -> Vec<recording_events::pb::v1::Recording> {
        let page = self
            .grpc()
            .await
            .list_recordings(authed(recording_events::pb::v1::ListRecordingsRequest {
                page_size: 1000,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.next_page_token.is_empty(), "more than one page");
        page.recordings
    }

    /// An authenticated WatchEvents stream.
    pub async fn watch(
        &self,
        req: recording_events::pb::v1::WatchEventsRequest,
    ) -> tonic::Streaming<recording_events::pb::v1::WatchEventsResponse> {
        self.grpc()
            .await
            .watch_events(authed(req))
            .await
            .unwrap()
            .into_inner()
    }

    /// An authenticated WatchEvents stream from `after_sequence`, without filters.
    pub async fn watch_after(
        &self,
        after_sequence: i64,
    ) -> tonic::Streaming<recording_events::pb::v1::WatchEventsResponse> {
        self.watch(recording_events::pb::v1::WatchEventsRequest {
            after_sequence,
            ..Default::default()
        })
        .await
    }

    /// The error a WatchEvents from `after_sequence` ends with at once (within 20 s: a
    /// stream that waits instead fails the test).
    pub async fn watch_refused(&self, after_sequence: i64) -> tonic::Status {
        let mut stream = self.watch_after(after_sequence).await;
        tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
            .await
            .expect("refused at once, not waited on")
            .expect_err("refused")
    }

    /// What gRPC health says of `""` (the server) and of the service, on a connection of
    /// its own. The two must agree (asked again a few times: a change reaches one name
    /// just before the other).
    pub async fn grpc_health(&self) -> tonic_health::pb::health_check_response::ServingStatus {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        const SERVICE: &str = recording_events::pb::v1::recording_event_server::SERVICE_NAME;
        let mut health = HealthClient::new(self.channel().await);
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.clear();
            for service in ["", SERVICE] {
                let reply = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                statuses.push(reply.status());
            }
            if statuses[0] == statuses[1] {
                return statuses[0];
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the server and the service disagree: {statuses:?}");
    }

    /// A raw gRPC channel (health, reflection).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Runs a query returning one value on the live database, read directly (the SQLite
    /// file, or the PostgreSQL schema), not through the service.
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(&self.db_path).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres { schema } => {
                let client = connect(&schema_url(schema)).await;
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// Runs statements on the live database directly (the SQLite file, or the PostgreSQL
    /// schema), not through the service.
    pub async fn execute(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(&self.db_path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Backend::Postgres { schema } => {
                let client = connect(&schema_url(schema)).await;
                client.batch_execute(sql).await.unwrap();
            }
        }
    }

    /// The URL of the app's PostgreSQL schema.
    pub fn database_url(&self) -> String {
        match &self.backend {
            Backend::Postgres { schema } => schema_url(schema),
            Backend::Sqlite => panic!("not a PostgreSQL app"),
        }
    }

    /// A connection of its own to the app's PostgreSQL schema.
    pub async fn database(&self) -> tokio_postgres::Client {
        connect(&self.database_url()).await
    }

    /// [`TestApp::scalar`] for counts and other integers.
    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// [`TestApp::scalar`] for text.
    pub async fn text(&self, sql: &str) -> String {
        self.scalar(sql).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a call was refused at a cap: RESOURCE_EXHAUSTED with exactly `message`.
pub fn assert_at_cap(refused: &tonic::Status, message: &str) {
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(refused.message(), message);
}

/// Calls `call` until it is no longer refused at a cap (a closed stream frees its place
/// once the server sees the reset, asynchronously), for at most 20 s; its answer.
pub async fn once_a_place_is_free<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let answered = async {
        loop {
            match call().await {
                Ok(answer) => break answer,
                Err(e) => {
                    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), answered)
        .await
        .expect("a closed stream frees its place")
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

/// FindRecordings for the seed example's camera at a time its file covers.
pub fn alarm_lookup() -> recording_events::pb::v1::FindRecordingsRequest {
    recording_events::pb::v1::FindRecordingsRequest {
        stream: "886_142279".into(),
        at: Some(prost_types::Timestamp {
            seconds: 1_597_656_790,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// `grpc.health.v1.Health/Check` on a new connection to the gRPC address `addr`: the
/// serving status.
pub async fn health_check(addr: impl std::fmt::Display) -> Result<i32, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map(|reply| reply.into_inner().status)
}
