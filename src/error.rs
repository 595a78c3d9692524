//! One error type with one code table, rendered as a `tonic::Status` for gRPC and as the
//! reply envelope with an HTTP status for JSON. Both fronts agree by construction.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What went wrong, as a client can act on it. Each code has one gRPC code and one HTTP
/// status (the grpc-gateway / Envoy table), and a stable machine name for the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or a field is invalid.
    InvalidArgument,
    /// No credentials, or wrong ones.
    Unauthenticated,
    /// Credentials are valid but do not allow this.
    PermissionDenied,
    /// The resource (or route) does not exist.
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// Too much load right now: retry later.
    ResourceExhausted,
    /// A bug or an unexpected failure; details are logged, not returned.
    Internal,
    /// A dependency (the store) is unavailable: retry later.
    Unavailable,
    /// The work did not finish in time.
    DeadlineExceeded,
    /// A position past what is kept (a WatchEvents cursor into events retention removed).
    OutOfRange,
    /// HTTP only: the route exists but not for this method.
    MethodNotAllowed,
    /// HTTP only: the body is over the configured limit.
    PayloadTooLarge,
    /// HTTP only: the body is not JSON.
    UnsupportedMediaType,
    /// HTTP only: the client did not send its request in time.
    RequestTimeout,
}

impl Code {
    /// The gRPC status code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Code::InvalidArgument | Code::UnsupportedMediaType => tonic::Code::InvalidArgument,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::ResourceExhausted | Code::PayloadTooLarge => tonic::Code::ResourceExhausted,
            Code::Internal => tonic::Code::Internal,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::DeadlineExceeded | Code::RequestTimeout => tonic::Code::DeadlineExceeded,
            Code::OutOfRange => tonic::Code::OutOfRange,
            Code::MethodNotAllowed => tonic::Code::Unimplemented,
        }
    }

    /// A passing condition (a full ingest queue, a store or server briefly away): both
    /// fronts tell the client to try again in a second (HTTP `Retry-After`, gRPC retry
    /// pushback).
    pub fn retry_soon(self) -> bool {
        matches!(self, Code::ResourceExhausted | Code::Unavailable)
    }

    /// The HTTP status code.
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Code::InvalidArgument => S::BAD_REQUEST,
            Code::Unauthenticated => S::UNAUTHORIZED,
            Code::PermissionDenied => S::FORBIDDEN,
            Code::NotFound => S::NOT_FOUND,
            Code::AlreadyExists => S::CONFLICT,
            Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
            Code::Internal => S::INTERNAL_SERVER_ERROR,
            Code::Unavailable => S::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
            Code::OutOfRange => S::BAD_REQUEST,
            Code::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            Code::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Code::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            Code::RequestTimeout => S::REQUEST_TIMEOUT,
        }
    }

    /// The machine-readable name used in the envelope's `error` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with a code, a message that is safe to show to the client, and (for internal
/// failures) the cause, which is logged once at the boundary and never sent.
pub struct Error {
    code: Code,
    message: String,
    /// The request field at fault (`message` starts with it and `": "`).
    field: Option<Box<str>>,
    /// The resource not found: its type URL and name.
    resource: Option<(&'static str, Box<str>)>,
    source: Option<Source>,
}

/// The longest message an error carries: a refusal quotes what it refuses (serde quotes a
/// bad value whole), and a 64 KiB value would otherwise come back, and be logged, whole.
const MAX_MESSAGE: usize = 600;

/// `message`, or when longer than [`MAX_MESSAGE`], its start and its end (where the reason
/// and the JSON position are) around a note of how much was cut.
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let head = message.floor_char_boundary(400);
    let tail = message.ceil_char_boundary(message.len() - 160);
    format!(
        "{}… ({} bytes cut) …{}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

impl Error {
    /// An error with a client-safe message (cut in the middle when over 600 bytes).
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: bounded(message.into()),
            field: None,
            resource: None,
            source: None,
        }
    }

    /// `field: reason`, with code `InvalidArgument`; gRPC clients also get the field and
    /// the reason apart (`google.rpc.BadRequest`).
    pub fn invalid(field: &str, reason: impl fmt::Display) -> Self {
        Error {
            field: Some(field.into()),
            ..Error::new(Code::InvalidArgument, format!("{field}: {reason}"))
        }
    }

    /// `field: no {what} `name``, with code `NotFound`; gRPC clients also get the
    /// resource's type (a type URL, e.g. `type.googleapis.com/isdp.recording.v1.Recording`)
    /// and name apart (`google.rpc.ResourceInfo`).
    pub fn not_found(field: &str, what: &str, resource_type: &'static str, name: &str) -> Self {
        Error {
            resource: Some((resource_type, name.into())),
            ..Error::new(Code::NotFound, format!("{field}: no {what} `{name}`"))
        }
    }

    /// A failure whose details must not reach the client: the client sees `message`, the
    /// log sees `source`.
    pub fn with_source(code: Code, message: impl Into<String>, source: impl Into<Source>) -> Self {
        Error {
            code,
            message: bounded(message.into()),
            field: None,
            resource: None,
            source: Some(source.into()),
        }
    }

    /// The store failed: `Unavailable`, the cause kept for the log. Except where the
    /// database refused the data it was given (PostgreSQL's SQLSTATE classes 22, data
    /// exception, and 54, program limit exceeded): the same request would fail again, so
    /// that is `Internal` (a check that validation missed), not "retry later".
    pub fn store(source: impl Into<Source>) -> Self {
        let source = source.into();
        let refused_its_data = source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|state| ["22", "54"].iter().any(|c| state.code().starts_with(c)));
        if refused_its_data {
            return Error::internal(source);
        }
        Error::with_source(
            Code::Unavailable,
            "the store is unavailable, retry later",
            source,
        )
    }

    /// An unexpected failure: `Internal`, the cause kept for the log.
    pub fn internal(source: impl Into<Source>) -> Self {
        Error::with_source(Code::Internal, "internal error", source)
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Logs server-side failures (with their cause chain) once, where the error leaves
    /// the service; client mistakes, and a stopping server's refusals, are logged at
    /// debug level only. The message is logged [`Escaped`]: it may repeat what a client
    /// sent. Store failures are logged at most once a second (see
    /// `STORE_FAILURES`).
    pub fn log(&self) {
        match (&self.source, self.code) {
            (Some(source), Code::Unavailable) => {
                if let Some(left_out) = STORE_FAILURES.admit(Instant::now()) {
                    tracing::error!(code = self.code.as_str(), reason = %Escaped(&self.message), cause = %Chain(source.as_ref()), left_out, request_id = crate::request_id::current().as_deref(), "request failed")
                }
            }
            (Some(source), _) => {
                tracing::error!(code = self.code.as_str(), reason = %Escaped(&self.message), cause = %Chain(source.as_ref()), request_id = crate::request_id::current().as_deref(), "request failed")
            }
            (None, Code::Internal) => {
                tracing::error!(code = self.code.as_str(), reason = %Escaped(&self.message), request_id = crate::request_id::current().as_deref(), "request failed")
            }
            // Without a cause, UNAVAILABLE is the server stopping (a watch ended, not
            // ready): expected, not a failure.
            (None, _) => {
                tracing::debug!(code = self.code.as_str(), reason = %Escaped(&self.message), request_id = crate::request_id::current().as_deref(), "request rejected")
            }
        }
    }
}

/// A full disk or a lost database fails every request while it lasts: one line per
/// request would flood the log (on the same disk, perhaps). One line a second instead,
/// each giving how many like it were left out since the previous one
/// (`recording_events_callbacks_total{outcome="unavailable"}` counts them all).
static STORE_FAILURES: Throttle = Throttle::new(Duration::from_secs(1));

/// Lets one event through per `every`, counting the others (for logs that a failure
/// repeated many times a second would flood).
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// One event per `every`.
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(how many were left out since the last one let through)` when an event at
    /// `now` may go through.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, left_out) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.every => {
                *left_out += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("field", &self.field)
            .field("resource", &self.resource)
            .field(
                "source",
                &self.source.as_ref().map(|s| Chain(s.as_ref()).to_string()),
            )
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// `google.rpc.ErrorInfo`'s domain: the service that names the reasons.
pub const ERROR_DOMAIN: &str = "recording-events";

/// gRPC's richer error model (AIP-193), in `grpc-status-details-bin`: every error carries
/// a `google.rpc.ErrorInfo` whose `reason` is the envelope's `error` code (so it tells a
/// body too large from a full queue, both `ResourceExhausted`), an invalid field a
/// `google.rpc.BadRequest` naming it, a resource not found a `google.rpc.ResourceInfo`,
/// and a passing condition a `google.rpc.RetryInfo`.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};

        e.log();
        let retry_soon = e.code.retry_soon();
        let mut details = ErrorDetails::with_error_info(
            e.code.as_str(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        if let Some(field) = &e.field {
            let reason = e.message.get(field.len() + 2..).unwrap_or(&e.message);
            details.add_bad_request_violation(field.as_ref(), reason);
        }
        if let Some((resource_type, name)) = &e.resource {
            details.set_resource_info(*resource_type, name.as_ref(), "", e.message.as_str());
        }
        if retry_soon {
            details.set_retry_info(Some(Duration::from_secs(1)));
        }
        let mut status = tonic::Status::with_error_details(e.code.grpc_code(), e.message, details);
        if retry_soon {
            // Honoured by gRPC clients with a retry policy.
            status.metadata_mut().insert(
                "grpc-retry-pushback-ms",
                tonic::metadata::MetadataValue::from_static("1000"),
            );
        }
        status
    }
}

/// Displays text that may repeat what a client sent, for a log line: control characters
/// (newlines, terminal escapes) are written escaped (`\n`, `\u{1b}`), so that no input
/// can forge a log line or drive the operator's terminal.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Displays an error and its causes: `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_keeps_its_start_and_end_and_says_how_much_was_cut() {
        let short = Error::invalid("app", "is required");
        assert_eq!(short.message, "app: is required");

        let quoted = format!(
            "`{}é{}` is not an RFC 3339 time",
            "a".repeat(399),
            "b".repeat(5000)
        );
        let whole = format!("start_time: {quoted}");
        let long = Error::invalid("start_time", &quoted);

        let (head, rest) = long.message.split_once("… (").unwrap();
        let (cut, tail) = rest.split_once(" bytes cut) …").unwrap();
        assert!(whole.starts_with(head) && head.len() <= 400, "{head}");
        assert!(whole.ends_with(tail) && tail.ends_with("bbb` is not an RFC 3339 time"));
        assert_eq!(
            head.len() + cut.parse::<usize>().unwrap() + tail.len(),
            whole.len()
        );
        assert!(long.message.len() < MAX_MESSAGE, "{}", long.message.len());
    }

    #[test]
    fn escaped_text_cannot_start_a_log_line_or_drive_a_terminal() {
        let sent = "start_time: `x\n2026-11-30T00:00:00Z  INFO forged\u{1b}[31m\r\t` é";
        assert_eq!(
            Escaped(sent).to_string(),
            "start_time: `x\\n2026-11-30T00:00:00Z  INFO forged\\u{1b}[31m\\r\\t` é"
        );
    }

    #[test]
    fn both_renderings_follow_the_gateway_table() {
        let table = [
            (Code::InvalidArgument, tonic::Code::InvalidArgument, 400),
            (Code::Unauthenticated, tonic::Code::Unauthenticated, 401),
            (Code::PermissionDenied, tonic::Code::PermissionDenied, 403),
            (Code::NotFound, tonic::Code::NotFound, 404),
            (Code::AlreadyExists, tonic::Code::AlreadyExists, 409),
            (Code::ResourceExhausted, tonic::Code::ResourceExhausted, 429),
            (Code::Internal, tonic::Code::Internal, 500),
            (Code::Unavailable, tonic::Code::Unavailable, 503),
            (Code::DeadlineExceeded, tonic::Code::DeadlineExceeded, 504),
            (Code::OutOfRange, tonic::Code::OutOfRange, 400),
        ];
        for (code, grpc, http) in table {
            assert_eq!(code.grpc_code(), grpc, "{code:?}");
            assert_eq!(code.http_status().as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn a_throttle_lets_one_through_per_interval_and_counts_the_others() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);

        let admitted: Vec<Option<u64>> = [0, 400, 999, 1_000, 1_500, 3_000]
            .into_iter()
            .map(|ms| throttle.admit(at(ms)))
            .collect();

        assert_eq!(admitted, [Some(0), None, None, Some(2), None, Some(1)]);
    }

    #[test]
    fn grpc_errors_carry_the_richer_error_model() {
        use tonic_types::StatusExt;

        let status = tonic::Status::from(Error::invalid("file_size", "must not be negative"));
        assert_eq!(status.message(), "file_size: must not be negative");
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_ARGUMENT", ERROR_DOMAIN)
        );
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(
            (
                violations[0].field.as_str(),
                violations[0].description.as_str()
            ),
            ("file_size", "must not be negative")
        );
        assert!(details.retry_info().is_none());

        let status = tonic::Status::from(Error::not_found(
            "id",
            "recording",
            "type.googleapis.com/isdp.recording.v1.Recording",
            "abc",
        ));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "id: no recording `abc`");
        let resource = status.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(
            (
                resource.resource_type.as_str(),
                resource.resource_name.as_str()
            ),
            ("type.googleapis.com/isdp.recording.v1.Recording", "abc")
        );

        let status = tonic::Status::from(Error::new(Code::PayloadTooLarge, "body: too large"));
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "PAYLOAD_TOO_LARGE");
        assert!(details.bad_request().is_none());
        assert!(details.retry_info().is_none());

        let status = tonic::Status::from(Error::new(Code::ResourceExhausted, "queue full"));
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "RESOURCE_EXHAUSTED");
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "1000"
        );
    }

    #[test]
    fn internal_causes_stay_out_of_the_client_message() {
        let e = Error::internal(std::io::Error::other("disk on fire at /secret/path"));
        let status = tonic::Status::from(e);
        assert_eq!(status.message(), "internal error");
    }
}
