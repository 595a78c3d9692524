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

/// The range of a valid `google.protobuf.Timestamp`, in seconds since the epoch:
/// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Converts from a protobuf timestamp.
///
/// # Errors
/// When the timestamp is outside protobuf's range (years 1 to 9999) or its nanos are not
/// in `0..1e9`.
pub fn from_timestamp(t: &Timestamp) -> Result<DateTime<Utc>, String> {
    u32::try_from(t.nanos)
        .ok()
        .filter(|_| TIMESTAMP_SECONDS.contains(&t.seconds))
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| {
            format!(
                "{}s {}ns is not a valid timestamp (years 1 to 9999, nanos 0 to 999999999)",
                t.seconds, t.nanos
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_protobufs_range_are_refused() {
        let at = |seconds, nanos| from_timestamp(&Timestamp { seconds, nanos });
        let first = parse_rfc3339("0001-01-01T00:00:00Z").unwrap();
        let last = parse_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap();
        assert_eq!(at(first.timestamp(), 0), Ok(first));
        assert_eq!(at(last.timestamp(), 999_999_999), Ok(last));
        assert!(at(first.timestamp() - 1, 0).is_err());
        assert!(at(last.timestamp() + 1, 0).is_err());
        assert!(at(DateTime::<Utc>::MAX_UTC.timestamp(), 0).is_err());
        assert!(at(0, -1).is_err());
        assert!(at(0, 1_000_000_000).is_err());
    }
}
