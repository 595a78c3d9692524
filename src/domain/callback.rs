//! A recording callback that passed validation ("parse, don't validate"): once you hold a
//! [`Callback`], its required fields are present and its numbers and times make sense.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::time;
use crate::error::Error;
use crate::pb::v1::VodCallBackRequest;

/// The kind of callback. Unknown kinds are kept as sent: rejecting a callback would lose it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A recording task started.
    RecordStart,
    /// A new file of the task started.
    RecordNewFileStart,
    /// A file is complete and available.
    RecordFileComplete,
    /// The recording task ended.
    RecordOver,
    /// The recording failed.
    RecordFailed,
    /// A type this version does not know.
    Other(String),
}

impl EventType {
    /// Parses Huawei's name (exact, upper case); anything else is [`EventType::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "RECORD_START" => EventType::RecordStart,
            "RECORD_NEW_FILE_START" => EventType::RecordNewFileStart,
            "RECORD_FILE_COMPLETE" => EventType::RecordFileComplete,
            "RECORD_OVER" => EventType::RecordOver,
            "RECORD_FAILED" => EventType::RecordFailed,
            other => EventType::Other(other.to_owned()),
        }
    }

    /// Huawei's name.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::RecordStart => "RECORD_START",
            EventType::RecordNewFileStart => "RECORD_NEW_FILE_START",
            EventType::RecordFileComplete => "RECORD_FILE_COMPLETE",
            EventType::RecordOver => "RECORD_OVER",
            EventType::RecordFailed => "RECORD_FAILED",
            EventType::Other(s) => s,
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A validated callback. Absent optional strings are empty; absent numbers and times are
/// `None`. Serializes to the JSON Huawei would have sent (used as the stored raw body of
/// callbacks that came over gRPC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Callback {
    pub project_id: String,
    pub publish_domain: String,
    pub event_type: EventType,
    pub app: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stream: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub record_format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub download_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub asset_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub play_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub obs_location: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub obs_bucket: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub obs_object: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_sign: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_timestamp: Option<i64>,
}

/// The longest name a callback may carry (`project_id`, `publish_domain`, `event_type`,
/// `app`, `stream`, `asset_id`, `task_id`, `job_id`), in bytes: far beyond Huawei's (a
/// project id is 32 characters, a stream name at most a few hundred), and short enough
/// for every store's indexes (PostgreSQL refuses a B-tree entry over ~2.7 KB, and
/// `(project_id, task_id)` is one). Longer is refused by name, on every store alike.
pub const MAX_NAME_BYTES: usize = 1024;

impl Callback {
    /// A callback of which only the type, app and stream are known (every other field
    /// empty): what a stored event still says when its body no longer parses.
    pub fn known_only_by(event_type: EventType, app: String, stream: String) -> Self {
        Callback {
            project_id: String::new(),
            publish_domain: String::new(),
            event_type,
            app,
            stream,
            record_format: String::new(),
            download_url: String::new(),
            asset_id: String::new(),
            play_url: String::new(),
            file_size: None,
            record_duration: None,
            start_time: None,
            end_time: None,
            width: None,
            height: None,
            obs_location: String::new(),
            obs_bucket: String::new(),
            obs_object: String::new(),
            task_id: String::new(),
            job_id: String::new(),
            auth_sign: String::new(),
            auth_timestamp: None,
        }
    }

    /// Validates a request: the four required fields present and not blank, no text with
    /// a NUL character, names at most [`MAX_NAME_BYTES`], numbers not negative, times
    /// valid, and `end_time` not before `start_time`.
    ///
    /// # Errors
    /// `InvalidArgument` with a message `field: reason` for the first problem found.
    pub fn parse(req: VodCallBackRequest) -> Result<Self, Error> {
        let text = |field: &str, value: String| super::check_text(field, &value).map(|()| value);
        let name = |field: &str, value: String| {
            let value = text(field, value)?;
            if value.len() > MAX_NAME_BYTES {
                return Err(Error::invalid(
                    field,
                    format!(
                        "must be at most {MAX_NAME_BYTES} bytes, got {}",
                        value.len()
                    ),
                ));
            }
            Ok(value)
        };
        let required = |field: &str, value: String| {
            let value = name(field, value)?.trim().to_owned();
            if value.is_empty() {
                Err(Error::invalid(field, "is required and must not be empty"))
            } else {
                Ok(value)
            }
        };
        let non_negative = |field: &str, value: Option<i64>| match value {
            Some(v) if v < 0 => Err(Error::invalid(
                field,
                format!("must not be negative, got {v}"),
            )),
            v => Ok(v),
        };
        let time = |field: &str, value: Option<prost_types::Timestamp>| {
            value
                .map(|t| time::from_timestamp(&t).map_err(|e| Error::invalid(field, e)))
                .transpose()
        };

        let callback = Callback {
            project_id: required("project_id", req.project_id)?,
            publish_domain: required("publish_domain", req.publish_domain)?,
            event_type: EventType::parse(&required("event_type", req.event_type)?),
            app: required("app", req.app)?,
            stream: name("stream", req.stream)?,
            record_format: text("record_format", req.record_format)?,
            download_url: text("download_url", req.download_url)?,
            asset_id: name("asset_id", req.asset_id)?,
            play_url: text("play_url", req.play_url)?,
            file_size: non_negative("file_size", req.file_size)?,
            record_duration: non_negative("record_duration", req.record_duration)?,
            start_time: time("start_time", req.start_time)?,
            end_time: time("end_time", req.end_time)?,
            width: non_negative("width", req.width)?,
            height: non_negative("height", req.height)?,
            obs_location: text("obs_location", req.obs_location)?,
            obs_bucket: text("obs_bucket", req.obs_bucket)?,
            obs_object: text("obs_object", req.obs_object)?,
            task_id: name("task_id", req.task_id)?,
            job_id: name("job_id", req.job_id)?,
            auth_sign: text("auth_sign", req.auth_sign)?,
            auth_timestamp: non_negative("auth_timestamp", req.auth_timestamp)?,
        };
        if let (Some(start), Some(end)) = (callback.start_time, callback.end_time)
            && end < start
        {
            return Err(Error::invalid(
                "end_time",
                format!("must not be before start_time ({end:?} < {start:?})"),
            ));
        }
        Ok(callback)
    }

    /// Whether nothing in the callback tells this occurrence from the next one of its kind:
    /// no task, file or time (a RECORD_START without `task_id`, say). Such a callback is
    /// the same every time its stream records, so a redelivery of it can only be told by
    /// when it came (see `NewEvent::new`).
    pub fn names_no_occurrence(&self) -> bool {
        [
            &self.task_id,
            &self.job_id,
            &self.asset_id,
            &self.obs_object,
            &self.download_url,
            &self.play_url,
        ]
        .iter()
        .all(|s| s.is_empty())
            && self.start_time.is_none()
            && self.end_time.is_none()
    }

    /// The identity of the event, for idempotency: SHA-256 over every typed field except
    /// `auth_sign` and `auth_timestamp`, which Huawei computes anew for each delivery. A
    /// redelivery therefore has the same fingerprint; two files of one stream differ in
    /// job_id, times, URLs or object keys, and so do not. Unknown JSON fields are not part
    /// of it (they are kept in the raw body only).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut put = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for s in [
            &self.project_id,
            &self.publish_domain,
            self.event_type.as_str(),
            &self.app,
            &self.stream,
            &self.record_format,
            &self.download_url,
            &self.asset_id,
            &self.play_url,
            &self.obs_location,
            &self.obs_bucket,
            &self.obs_object,
            &self.task_id,
            &self.job_id,
        ] {
            put(s);
        }
        for n in [
            self.file_size,
            self.record_duration,
            self.width,
            self.height,
        ] {
            put(&n.map(|n| n.to_string()).unwrap_or_default());
        }
        for t in [self.start_time, self.end_time] {
            put(&t
                .map(|t| time::to_micros(t).to_string())
                .unwrap_or_default());
        }
        h.finalize().into()
    }

    /// The callback as a request message again (for streaming stored events).
    pub fn to_request(&self) -> VodCallBackRequest {
        VodCallBackRequest {
            project_id: self.project_id.clone(),
            publish_domain: self.publish_domain.clone(),
            event_type: self.event_type.as_str().to_owned(),
            app: self.app.clone(),
            stream: self.stream.clone(),
            record_format: self.record_format.clone(),
            download_url: self.download_url.clone(),
            asset_id: self.asset_id.clone(),
            play_url: self.play_url.clone(),
            file_size: self.file_size,
            record_duration: self.record_duration,
            start_time: self.start_time.map(time::to_timestamp),
            end_time: self.end_time.map(time::to_timestamp),
            width: self.width,
            height: self.height,
            obs_location: self.obs_location.clone(),
            obs_bucket: self.obs_bucket.clone(),
            obs_object: self.obs_object.clone(),
            task_id: self.task_id.clone(),
            job_id: self.job_id.clone(),
            auth_sign: self.auth_sign.clone(),
            auth_timestamp: self.auth_timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> VodCallBackRequest {
        serde_json::from_str(include_str!("../../tests/payloads/seed_example.json")).unwrap()
    }

    #[test]
    fn seed_example_is_valid() {
        let cb = Callback::parse(seed()).unwrap();
        assert_eq!(cb.event_type, EventType::RecordFileComplete);
        assert_eq!(cb.file_size, Some(33_406_499));
    }

    #[test]
    fn blank_required_field_is_named() {
        let mut req = seed();
        req.app = "  ".into();
        let e = Callback::parse(req).unwrap_err();
        assert_eq!(e.message(), "app: is required and must not be empty");
    }

    #[test]
    fn text_with_a_nul_character_is_named() {
        let mut req = seed();
        req.obs_object = "record/a\0b.mp4".into();
        let e = Callback::parse(req).unwrap_err();
        assert_eq!(
            e.message(),
            "obs_object: must not contain a NUL character (U+0000)"
        );
        let mut req = seed();
        req.app = "\0".into();
        let e = Callback::parse(req).unwrap_err();
        assert_eq!(
            e.message(),
            "app: must not contain a NUL character (U+0000)"
        );
    }

    #[test]
    fn names_over_the_limit_are_named() {
        let mut req = seed();
        req.task_id = "t".repeat(MAX_NAME_BYTES);
        req.stream = "s".repeat(MAX_NAME_BYTES);
        assert!(Callback::parse(req.clone()).is_ok());
        req.stream.push('s');
        let e = Callback::parse(req).unwrap_err();
        assert_eq!(e.message(), "stream: must be at most 1024 bytes, got 1025");
        let mut req = seed();
        req.project_id = "é".repeat(600);
        let e = Callback::parse(req).unwrap_err();
        assert_eq!(
            e.message(),
            "project_id: must be at most 1024 bytes, got 1200"
        );
    }

    #[test]
    fn end_before_start_is_rejected() {
        let mut req = seed();
        std::mem::swap(&mut req.start_time, &mut req.end_time);
        let e = Callback::parse(req).unwrap_err();
        assert!(
            e.message()
                .starts_with("end_time: must not be before start_time")
        );
    }

    #[test]
    fn fingerprint_ignores_the_signature_only() {
        let a = Callback::parse(seed()).unwrap();
        let mut b = a.clone();
        b.auth_sign = "abc".into();
        b.auth_timestamp = Some(1);
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.job_id = "other".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn only_a_callback_without_task_file_or_time_names_no_occurrence() {
        let bare = Callback::parse(VodCallBackRequest {
            project_id: "p".into(),
            publish_domain: "d".into(),
            event_type: "RECORD_START".into(),
            app: "live".into(),
            stream: "cam".into(),
            record_format: "MP4".into(),
            obs_bucket: "bucket".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(bare.names_no_occurrence());
        let named: [fn(&mut Callback); 8] = [
            |c| c.task_id = "t".into(),
            |c| c.job_id = "j".into(),
            |c| c.asset_id = "a".into(),
            |c| c.obs_object = "o".into(),
            |c| c.download_url = "u".into(),
            |c| c.play_url = "u".into(),
            |c| c.start_time = Some(DateTime::UNIX_EPOCH),
            |c| c.end_time = Some(DateTime::UNIX_EPOCH),
        ];
        for name in named {
            let mut c = bare.clone();
            name(&mut c);
            assert!(!c.names_no_occurrence(), "{c:?}");
        }
        assert!(!Callback::parse(seed()).unwrap().names_no_occurrence());
    }
}
