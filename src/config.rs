//! Typed settings, from flags with environment fallbacks (the table in README.md).
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows them.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::time::Clock;

/// A secret string (token, key, client secret): `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A database URL. It may carry a password (`postgres://user:password@host/db`), so
/// `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, to connect with; never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The URL without its secrets, quoted: what errors name.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The URL without its secrets: what logs show.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://user:password@host/db?query → scheme://user:[redacted]@host/db?[redacted]
        // (the query may hold a `password=` too; a password may hold `@` or `?`).
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return f.write_str(&self.0);
        };
        let (userinfo, tail) = match rest.rsplit_once('@') {
            Some((userinfo, tail)) => (Some(userinfo), tail),
            None => (None, rest),
        };
        let (place, query) = match tail.split_once('?') {
            Some((place, _)) => (place, "?[redacted]"),
            None => (tail, ""),
        };
        let user = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, _)) => format!("{user}:[redacted]@"),
                None => format!("{info}@"),
            },
            None => String::new(),
        };
        write!(f, "{scheme}://{user}{place}{query}")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

/// A client of the token endpoint: `ID:SECRET` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredential {
    pub id: String,
    pub secret: Secret,
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredential")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl std::str::FromStr for ClientCredential {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(ClientCredential {
                id: id.to_owned(),
                secret: Secret::new(secret),
            }),
            _ => Err("expected ID:SECRET".into()),
        }
    }
}

/// How Huawei signs callbacks (`--callback-sign-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignType {
    /// hex(HMAC-SHA256(key, auth_timestamp + event_type + publish_domain + app + stream +
    /// download_url + play_url)).
    Hmacsha256,
    /// hex(MD5(key + auth_timestamp)).
    Md5,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Text for people (colours at a terminal).
    #[default]
    Text,
    /// One JSON object per line for log collectors: `timestamp`, `level`, `target`,
    /// `message` and the event's fields.
    Json,
}

/// What the callback route accepts as credentials (`--callback-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallbackAuth {
    /// A bearer token only.
    Bearer,
    /// A valid Huawei signature only.
    Signature,
    /// Either.
    BearerOrSignature,
}

/// recording-events: takes Huawei Cloud Live recording callbacks and serves the recordings
/// over gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "recording-events",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands; none means `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC and the HTTP callback (the default).
    Serve(Box<ServeArgs>),
    /// Copy a SQLite store into a new file, consistent as of one commit, while it serves.
    Backup(BackupArgs),
    /// Apply the schema migrations the store lacks, then exit (a start does this too).
    Migrate(MigrateArgs),
}

impl Cli {
    /// What to run; `serve` when no subcommand is given.
    pub fn into_command(self) -> Command {
        self.command
            .unwrap_or_else(|| Command::Serve(Box::new(self.serve)))
    }

    /// The serve arguments, whether or not `serve` was spelled out.
    ///
    /// # Panics
    /// When the command line asked for another subcommand.
    pub fn into_serve_args(self) -> ServeArgs {
        match self.into_command() {
            Command::Serve(args) => *args,
            Command::Backup(_) | Command::Migrate(_) => panic!("not a serve command line"),
        }
    }
}

/// Flags of `backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The store to copy: sqlite://PATH (the one the service runs on).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://recordings.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
    /// The new file to write the copy to (it must not exist).
    pub to: PathBuf,
}

/// Flags of `migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The store to migrate: sqlite://PATH (created if missing; not while a service runs
    /// on it) or postgres://… (while replicas run: they wait for it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://recordings.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
    /// Log lines as text or JSON.
    #[arg(long, env = "RECORDING_EVENTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the gRPC server (port 0: any free port).
    #[arg(
        long,
        env = "RECORDING_EVENTS_GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP callback server (port 0: any free port).
    #[arg(
        long,
        env = "RECORDING_EVENTS_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// Where events are stored: sqlite://PATH (created if missing), or
    /// postgres://USER:PASSWORD@HOST:PORT/DB for several replicas.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://recordings.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
    /// PostgreSQL: the most connections this replica's pool opens (its reads and its
    /// writer; the listener for other replicas' commits takes one more). Size it so that
    /// every replica's pool, plus one each, fits the server's `max_connections`.
    #[arg(long, env = "RECORDING_EVENTS_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub database_pool_size: u16,
    /// A bearer token clients may use (repeatable; under 16 characters is warned about).
    /// None: one is generated on first start, printed once, and kept in --token-file.
    #[arg(
        long = "api-token",
        env = "RECORDING_EVENTS_API_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_tokens: Vec<Secret>,
    /// Where the generated token is kept (default: beside the SQLite file).
    #[arg(long, env = "RECORDING_EVENTS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Turn authentication off (development only).
    #[arg(long, env = "RECORDING_EVENTS_NO_AUTH", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub no_auth: bool,
    /// Huawei callback signing key (repeatable, at most 2: current and next, for rotation).
    #[arg(
        long = "callback-key",
        env = "RECORDING_EVENTS_CALLBACK_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub callback_keys: Vec<Secret>,
    /// How Huawei signs callbacks.
    #[arg(
        long,
        env = "RECORDING_EVENTS_CALLBACK_SIGN_TYPE",
        value_enum,
        default_value = "hmacsha256"
    )]
    pub callback_sign_type: SignType,
    /// What the callback route accepts (default: bearer-or-signature when a key is set,
    /// else bearer).
    #[arg(long, env = "RECORDING_EVENTS_CALLBACK_AUTH", value_enum)]
    pub callback_auth: Option<CallbackAuth>,
    /// How far auth_timestamp may be from now, either way (e.g. 10m, 30s).
    #[arg(long, env = "RECORDING_EVENTS_SIGNATURE_SKEW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub signature_skew: Duration,
    /// A client of POST /oauth/token (repeatable): `ID:SECRET` (a secret under 16
    /// characters is warned about). None: the token endpoint issues nothing.
    #[arg(
        long = "client",
        env = "RECORDING_EVENTS_CLIENTS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub clients: Vec<ClientCredential>,
    /// How long an issued access token is valid (e.g. 1h, 15m).
    #[arg(long, env = "RECORDING_EVENTS_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Key that signs access tokens (HS256); give every replica the same one. None: one
    /// is generated on first start and kept beside the database (`<db>.signing-key`).
    #[arg(
        long,
        env = "RECORDING_EVENTS_TOKEN_SIGNING_KEY",
        hide_env_values = true
    )]
    pub token_signing_key: Option<Secret>,
    /// Largest accepted request: an HTTP body (gzip: before and once decompressed), or a
    /// gRPC message once decompressed, in bytes.
    #[arg(long, env = "RECORDING_EVENTS_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// How long a new connection may take to send its first request's headers (HTTP/1)
    /// or the HTTP/2 preface, on both fronts (after its TLS handshake, with TLS); and on
    /// the HTTP front each later request's headers. Slower connections are closed.
    #[arg(long, env = "RECORDING_EVENTS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// How many connections may be open at once on each port (gRPC, HTTP); more wait
    /// in the kernel's accept queue until one closes. Bounds memory under a flood of
    /// connections.
    #[arg(long, env = "RECORDING_EVENTS_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,
    /// How many WatchEvents streams may be open at once, over all connections; one more
    /// gets RESOURCE_EXHAUSTED (retry later). Bounds what followers can hold, since one
    /// HTTP/2 connection may carry many streams. The streams open without a token (health
    /// Watch, reflection) have a cap of the same size of their own.
    #[arg(long, env = "RECORDING_EVENTS_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,
    /// How many calls one gRPC connection may have open at once (HTTP/2's
    /// SETTINGS_MAX_CONCURRENT_STREAMS): a client's further calls wait until one ends, so
    /// that no one connection, authenticated or not (health `Watch` needs no token), can
    /// hold unbounded streams. A client that needs more opens more connections.
    #[arg(
        long,
        env = "RECORDING_EVENTS_MAX_CONCURRENT_STREAMS",
        default_value_t = 1024
    )]
    pub max_concurrent_streams: u32,
    /// Ask each gRPC connection to close after this long (an HTTP/2 GOAWAY: calls in
    /// progress finish, clients open a new connection for the next ones), so that
    /// clients behind a TCP load balancer spread again over the replicas (e.g. 30m).
    /// Streams still open on it, such as WatchEvents, are not cut. None: a connection
    /// lasts as long as its client keeps it.
    #[arg(long, env = "RECORDING_EVENTS_MAX_CONNECTION_AGE", value_parser = humantime::parse_duration)]
    pub max_connection_age: Option<Duration>,
    /// How long a client may take to send a request body on the HTTP front.
    #[arg(long, env = "RECORDING_EVENTS_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
    /// Once stopping (SIGTERM, Ctrl-C), how long requests in flight may take to finish
    /// before the service stops anyway (every acknowledged callback is on disk already).
    /// Under a supervisor that kills after N seconds (Kubernetes:
    /// terminationGracePeriodSeconds, 30 s by default), set it a few seconds below N.
    #[arg(long, env = "RECORDING_EVENTS_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Once stopping, how long to go on serving while reporting not ready (`/readyz`
    /// 503, gRPC health NOT_SERVING) before closing the ports, so that load balancers
    /// take the instance out first (e.g. 5s under Kubernetes). A second SIGTERM or
    /// Ctrl-C ends it early. Then --shutdown-timeout applies.
    #[arg(long, env = "RECORDING_EVENTS_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// How many callbacks may wait for the disk at once; beyond it callers get
    /// 429 / RESOURCE_EXHAUSTED and retry.
    #[arg(long, env = "RECORDING_EVENTS_INGEST_QUEUE", default_value_t = 8192)]
    pub ingest_queue: usize,
    /// Serve both fronts over TLS only, with this certificate chain (PEM; needs
    /// --tls-key). Without it both fronts are plain text (put them behind a TLS proxy).
    #[arg(long, env = "RECORDING_EVENTS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "RECORDING_EVENTS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require gRPC clients to present a certificate issued by one of these CAs (PEM;
    /// needs --tls-cert). The bearer token is still checked; the HTTP front is unchanged.
    #[arg(long, env = "RECORDING_EVENTS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse gRPC clients whose certificate its CA has revoked: the CAs' revocation lists
    /// (PEM X509 CRLs, one per CA of --tls-client-ca). A client whose CA has no list here,
    /// or whose CA's list is past its next update, is refused too. Re-read on SIGHUP.
    #[arg(
        long,
        env = "RECORDING_EVENTS_TLS_CLIENT_CRL",
        requires = "tls_client_ca"
    )]
    pub tls_client_crl: Option<PathBuf>,
    /// Remove the events received longer ago than this (e.g. `90d`), with the recordings
    /// none of whose events is left. Without it, everything is kept.
    #[arg(long, env = "RECORDING_EVENTS_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// How often --retention removes what has become due.
    #[arg(long, env = "RECORDING_EVENTS_RETENTION_EVERY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_every: Duration,
    /// Log lines as text, or as one JSON object per line (for log collectors).
    #[arg(long, env = "RECORDING_EVENTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Everything the application needs to start: the parsed flags plus what tests inject.
#[derive(Clone)]
pub struct Settings {
    pub args: ServeArgs,
    /// The clock used for signature windows and received-at times.
    pub clock: Clock,
    /// Print the generated-token banner (tests turn it off).
    pub print_banner: bool,
    /// How often both fronts ping an HTTP/2 connection, and how long they wait
    /// for the answer before closing it (tests shorten them).
    pub keepalive: (Duration, Duration),
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings from parsed flags, with the system clock.
    pub fn from_args(args: ServeArgs) -> Self {
        Settings {
            args,
            clock: Clock::system(),
            print_banner: true,
            keepalive: (Duration::from_secs(30), Duration::from_secs(10)),
        }
    }

    /// Settings for a throw-away instance: ports 0, the given database, the given token.
    pub fn for_tests(database_url: &str, token: &str) -> Self {
        let cli = Cli::parse_from([
            "recording-events",
            "--grpc-addr=127.0.0.1:0",
            "--http-addr=127.0.0.1:0",
        ]);
        let mut args = cli.into_serve_args();
        args.database_url = DatabaseUrl(database_url.to_owned());
        args.api_tokens = vec![Secret::new(token)];
        let mut settings = Settings::from_args(args);
        settings.print_banner = false;
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::for_tests("sqlite://x.db", "super-secret-token");
        let mut s = s;
        s.args.clients = vec!["billing:client-secret-value".parse().unwrap()];
        s.args.token_signing_key = Some(Secret::new("signing-key-value"));
        s.args.database_url = DatabaseUrl("postgres://app:db-password-value@db:5432/x".into());
        let printed = format!("{s:?}");
        assert!(!printed.contains("client-secret-value") && !printed.contains("signing-key-value"));
        assert!(!printed.contains("db-password-value") && printed.contains("postgres://app:"));
        assert!(!printed.contains("super-secret-token"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn a_database_url_shows_where_but_no_password() {
        let shown = |url: &str| format!("{:?}", url.parse::<DatabaseUrl>().unwrap());
        assert_eq!(
            shown("postgres://app:p@ss:word@db:5432/x"),
            r#""postgres://app:[redacted]@db:5432/x""#
        );
        assert_eq!(
            shown("postgres://app@db/x?password=query-secret&sslmode=require"),
            r#""postgres://app@db/x?[redacted]""#
        );
        assert_eq!(
            shown("postgres://app:pa?ss@db/x"),
            r#""postgres://app:[redacted]@db/x""#
        );
        assert_eq!(
            shown("sqlite://./recordings.db"),
            r#""sqlite://./recordings.db""#
        );
        // Logged as a plain value (a JSON log line gets a string, not a quoted one).
        let url: DatabaseUrl = "postgres://app:p@db/x?password=q".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://app:[redacted]@db/x?[redacted]");
        assert_eq!(shown("recordings.db"), r#""recordings.db""#);
    }

    #[test]
    fn no_subcommand_means_serve() {
        let a = Cli::parse_from(["recording-events", "--grpc-addr=127.0.0.1:1"]).into_serve_args();
        let b = Cli::parse_from(["recording-events", "serve", "--grpc-addr=127.0.0.1:1"])
            .into_serve_args();
        assert_eq!(a.grpc_addr, b.grpc_addr);
        assert_eq!(a.signature_skew, Duration::from_secs(600));
    }
}
