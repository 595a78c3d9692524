//! The one handler both fronts call: validate → store → (the store) notify. The gRPC
//! adapter and the HTTP shim are thin translations onto these methods.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::domain::time::{Clock, from_timestamp};
use crate::domain::{Callback, Recording, RecordingState, check_text, check_texts};
use crate::error::{Code, Error};
use crate::pb::v1::{FindRecordingsRequest, ListRecordingsRequest, VodCallBackRequest};
use crate::store::{Appended, FindQuery, ListQuery, NewEvent, Pruned, Store};

/// Default and largest `page_size` of ListRecordings.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most matches FindRecordings returns; a window with more is refused, never cut.
pub const MAX_MATCHES: usize = 1000;
/// The type URL of a recording, as `google.rpc.ResourceInfo` names it in NOT_FOUND.
const RECORDING_TYPE: &str = "type.googleapis.com/isdp.recording.v1.Recording";

/// The service core, shared by both fronts.
#[derive(Clone)]
pub struct RecordingService {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl RecordingService {
    /// A service over a store.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        RecordingService { store, clock }
    }

    /// Closes the store (see [`Store::close`]); at shutdown, once nothing else calls in.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Retention: removes the events received more than `age` ago (by the service's
    /// clock) and the recordings none of whose events is left.
    ///
    /// # Errors
    /// `Unavailable` when the store fails.
    pub async fn prune_older_than(&self, age: std::time::Duration) -> Result<Pruned, Error> {
        let age = Duration::from_std(age).unwrap_or(Duration::MAX);
        let before = self
            .clock
            .now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.store.prune(before).await
    }

    /// The store (for readiness checks and watching).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Takes one callback: validates it and returns once it is durably stored.
    /// `raw_body` is the JSON as received; for gRPC calls it is `None` and the validated
    /// callback is stored rendered as JSON. `peer`, the sender's address, is logged with a
    /// refusal.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field; `ResourceExhausted` or `Unavailable` from the
    /// store.
    pub async fn vod_callback(
        &self,
        req: VodCallBackRequest,
        raw_body: Option<String>,
        peer: Option<SocketAddr>,
    ) -> Result<Appended, Error> {
        let started = std::time::Instant::now();
        let result = self.store_callback(req, raw_body).await;
        match &result {
            Ok(a) if a.duplicate => count_callback("duplicate".into()),
            Ok(_) => count_callback("stored".into()),
            Err(e) => count_rejected_callback(e, peer),
        }
        if result.is_ok() {
            metrics::histogram!("recording_events_callback_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn store_callback(
        &self,
        req: VodCallBackRequest,
        raw_body: Option<String>,
    ) -> Result<Appended, Error> {
        let callback = Callback::parse(req)?;
        let raw_body = match raw_body {
            Some(body) => body,
            None => serde_json::to_string(&callback).map_err(Error::internal)?,
        };
        let appended = self
            .store
            .append(NewEvent::new(callback, raw_body, self.clock.now()))
            .await?;
        tracing::debug!(
            sequence = appended.sequence,
            duplicate = appended.duplicate,
            "callback stored"
        );
        Ok(appended)
    }

    /// One recording.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty id or one that no recording could have (ids are 32
    /// hex digits), `NotFound`, or `Unavailable`.
    pub async fn get_recording(&self, id: &str) -> Result<Recording, Error> {
        if id.trim().is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        check_text("id", id)?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                "id",
                format!(
                    "`{id}` is not a recording id: those are 32 hex digits, as a Recording's `id`"
                ),
            ));
        }
        let id = id.to_ascii_lowercase();
        self.store
            .get_recording(&id)
            .await?
            .ok_or_else(|| Error::not_found("id", "recording", RECORDING_TYPE, &id))
    }

    /// A page of recordings, newest first, and the token of the next page (empty when
    /// this is the last).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page size, token, state or window.
    pub async fn list_recordings(
        &self,
        req: ListRecordingsRequest,
    ) -> Result<(Vec<Recording>, String), Error> {
        let page_size = match req.page_size {
            n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n if n as usize > MAX_PAGE_SIZE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must be at most {MAX_PAGE_SIZE}, got {n}"),
                ));
            }
            n => n as usize,
        };
        let state = match req.state {
            0 => None,
            n => Some(
                RecordingState::from_i32(n)
                    .ok_or_else(|| Error::invalid("state", format!("unknown state {n}")))?,
            ),
        };
        let (window_start, window_end) =
            window(req.window_start.as_ref(), req.window_end.as_ref(), false)?;
        check_texts(&[
            ("project_id", &req.project_id),
            ("publish_domain", &req.publish_domain),
            ("app", &req.app),
            ("stream", &req.stream),
        ])?;
        let opt = |s: String| Some(s).filter(|s| !s.is_empty());
        let mut query = ListQuery {
            project_id: opt(req.project_id),
            publish_domain: opt(req.publish_domain),
            app: opt(req.app),
            stream: opt(req.stream),
            state,
            window_start,
            window_end,
            before_sequence: None,
            limit: page_size + 1,
        };
        let filters = filters_digest(&query);
        if !req.page_token.is_empty() {
            query.before_sequence = Some(parse_page_token(&req.page_token, &filters)?);
        }
        let mut page = self.store.list_recordings(query).await?;
        let next = if page.len() > page_size {
            page.truncate(page_size);
            page_token(page[page_size - 1].first_sequence, &filters)
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// The recordings of a stream covering `at` (start inclusive, end exclusive) or
    /// overlapping [window_start, window_end), oldest first, each with the offset of `at`
    /// (or window_start) from the file's start; no offset for a file still recording whose
    /// start was not sent (it is matched from when its NEW_FILE_START was received).
    ///
    /// # Errors
    /// `InvalidArgument` when the stream is missing, the instant/window is not exactly
    /// one of the two forms, or more than [`MAX_MATCHES`] recordings fall in it.
    pub async fn find_recordings(
        &self,
        req: FindRecordingsRequest,
    ) -> Result<Vec<(Recording, Option<Duration>)>, Error> {
        if req.stream.trim().is_empty() {
            return Err(Error::invalid("stream", "is required"));
        }
        check_texts(&[("stream", &req.stream), ("app", &req.app)])?;
        let has_window = req.window_start.is_some() || req.window_end.is_some();
        let (start, end) = match (&req.at, has_window) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "at",
                    "give either `at` or `window_start` and `window_end`, not both",
                ));
            }
            (Some(at), false) => {
                let at = from_timestamp(at).map_err(|e| Error::invalid("at", e))?;
                (at, at + Duration::microseconds(1))
            }
            (None, true) => match window(req.window_start.as_ref(), req.window_end.as_ref(), true)?
            {
                (Some(s), Some(e)) => (s, e),
                _ => unreachable!("window() requires both bounds here"),
            },
            (None, false) => {
                return Err(Error::invalid(
                    "at",
                    "required (or `window_start` and `window_end`)",
                ));
            }
        };
        let query = FindQuery {
            stream: req.stream,
            app: Some(req.app).filter(|a| !a.is_empty()),
            start,
            end,
            limit: MAX_MATCHES + 1,
        };
        let found = self.store.find_recordings(query).await?;
        if found.len() > MAX_MATCHES {
            // The oldest MAX_MATCHES alone would look like the whole answer.
            let field = if req.at.is_some() { "at" } else { "window_end" };
            return Err(Error::invalid(
                field,
                format!(
                    "more than {MAX_MATCHES} recordings of this stream fall in it; narrow \
                     the window, or page through ListRecordings with the same stream and \
                     window"
                ),
            ));
        }
        Ok(found
            .into_iter()
            .map(|r| {
                let offset = r.start_time.map(|s| (start - s).max(Duration::zero()));
                (r, offset)
            })
            .collect())
    }
}

/// Optional [start, end) bounds.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Validates a time window; with `both`, both bounds are required.
fn window(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    both: bool,
) -> Result<Window, Error> {
    let start = start
        .map(|t| from_timestamp(t).map_err(|e| Error::invalid("window_start", e)))
        .transpose()?;
    let end = end
        .map(|t| from_timestamp(t).map_err(|e| Error::invalid("window_end", e)))
        .transpose()?;
    if both && start.is_none() {
        return Err(Error::invalid(
            "window_start",
            "is required with window_end",
        ));
    }
    if both && end.is_none() {
        return Err(Error::invalid(
            "window_end",
            "is required with window_start",
        ));
    }
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        return Err(Error::invalid("window_end", "must be after window_start"));
    }
    Ok((start, end))
}

/// A digest of the list filters: a page token is valid only with the filters it came from.
fn filters_digest(q: &ListQuery) -> String {
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        q.project_id, q.publish_domain, q.app, q.stream, q.state, q.window_start, q.window_end
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

fn page_token(before_sequence: i64, filters: &str) -> String {
    hex::encode(format!("v1:{before_sequence}:{filters}"))
}

fn parse_page_token(token: &str, filters: &str) -> Result<i64, Error> {
    let bad = || Error::invalid("page_token", "is not a token this service issued");
    let text = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut parts = text.split(':');
    let (Some("v1"), Some(seq), Some(digest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let seq: i64 = seq.parse().map_err(|_| bad())?;
    if digest != filters {
        return Err(Error::invalid(
            "page_token",
            "was issued for other filters; repeat the filters of the first page",
        ));
    }
    Ok(seq)
}

/// One callback taken, in `recording_events_callbacks_total{outcome}`.
fn count_callback(outcome: metrics::SharedString) {
    metrics::counter!("recording_events_callbacks_total", "outcome" => outcome).increment(1);
}

/// Refused callbacks are logged at most once a second (each line with `left_out`, how many
/// since the previous one): a client sending bad callbacks in a loop must not flood the log.
static REFUSED: crate::error::Throttle =
    crate::error::Throttle::new(std::time::Duration::from_secs(1));

/// A callback refused with `error`, counted under its code in lower case (e.g.
/// `unauthenticated`), and logged as a warning: a callback Huawei sent and we refused is a
/// recording event lost unless someone looks. The service counts what reaches it; a front
/// counts what it refuses before (unreadable JSON, a bad token or signature, a body too
/// large). The line names the `peer` (the sender's address) when the front knows it, so
/// that a misconfigured sender can be found. Store failures are logged where they happen.
pub fn count_rejected_callback(error: &Error, peer: Option<SocketAddr>) {
    count_callback(error.code().as_str().to_ascii_lowercase().into());
    if !matches!(error.code(), Code::Internal | Code::Unavailable)
        && let Some(left_out) = REFUSED.admit(std::time::Instant::now())
    {
        tracing::warn!(
            code = error.code().as_str(),
            reason = %crate::error::Escaped(error.message()),
            peer = peer.map(tracing::field::display),
            request_id = crate::request_id::current().as_deref(),
            left_out,
            "callback refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = page_token(42, "abc");
        assert_eq!(parse_page_token(&t, "abc").unwrap(), 42);
        assert!(
            parse_page_token(&t, "abd")
                .unwrap_err()
                .message()
                .contains("other filters")
        );
        for garbage in [
            "zz",
            "00",
            &hex::encode("v1:x:abc"),
            &hex::encode("v2:1:abc"),
        ] {
            assert_eq!(
                parse_page_token(garbage, "abc").unwrap_err().code(),
                Code::InvalidArgument
            );
        }
    }
}
