//! Times: RFC 3339 parsing and the conversions between chrono and protobuf timestamps.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// Parses an RFC 3339 time such as `2020-08-17T09:30:16Z` or
/// `2020-08-17T17:30:16.250+08:00`.
///
/// # Errors
/// A message saying what was expected, without the field name (the caller adds it).
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2020-08-17T09:30:16Z ({e})"))
}

/// Converts to a protobuf timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Converts from a protobuf timestamp.
///
/// # Errors
/// When the timestamp is out of range or its nanos are not in `0..1e9`.
pub fn from_timestamp(t: &Timestamp) -> Result<DateTime<Utc>, String> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| format!("{}s {}ns is not a valid timestamp", t.seconds, t.nanos))
}

/// Microseconds since the Unix epoch: how times are stored and indexed.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`to_micros`].
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The source of "now", injectable so tests can check time windows without sleeping.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(Utc::now))
    }

    /// A clock stopped at `t`.
    pub fn fixed(t: DateTime<Utc>) -> Self {
        Clock(std::sync::Arc::new(move || t))
    }

    /// A clock that asks `f` (e.g. a test's adjustable time).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(std::sync::Arc::new(f))
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}
