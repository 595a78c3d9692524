//! Recordings: one per recorded file, folded from the callbacks about it.
//!
//! Identity (see [`key`]): the `job_id` when Huawei sends one (NEW_FILE_START and
//! FILE_COMPLETE do), else the `asset_id`, else the `obs_object`, else the file's
//! `start_time` with its `record_format`; always within one project, domain, app and
//! stream.
//!
//! Callbacks arrive late, twice and out of order, so the fold is order-free: a recording
//! remembers the strongest event it has seen (its rank: start < failed < complete) and
//! whether its task is over, and its state is a function of those two. Fields come from
//! the strongest event that carried them, filled in from weaker ones where it did not.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::{Callback, EventType};

/// The lifecycle state of a recorded file (values as in the proto enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingState {
    /// The file is being written.
    Recording = 1,
    /// The file is complete, with its details.
    Complete = 2,
    /// The recording failed.
    Failed = 3,
    /// The task ended while the file was still recording.
    Ended = 4,
}

impl RecordingState {
    /// From the stored / proto number.
    pub fn from_i32(n: i32) -> Option<Self> {
        match n {
            1 => Some(RecordingState::Recording),
            2 => Some(RecordingState::Complete),
            3 => Some(RecordingState::Failed),
            4 => Some(RecordingState::Ended),
            _ => None,
        }
    }
}

/// How strong an event's word on a file is. A stronger event overrides a weaker one's
/// fields and state, whatever order they arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// RECORD_NEW_FILE_START.
    Started = 1,
    /// RECORD_FAILED.
    Failed = 2,
    /// RECORD_FILE_COMPLETE.
    Completed = 3,
}

impl Rank {
    /// The rank of a file-level event; `None` for task-level and unknown events.
    pub fn of(event_type: &EventType) -> Option<Rank> {
        match event_type {
            EventType::RecordNewFileStart => Some(Rank::Started),
            EventType::RecordFailed => Some(Rank::Failed),
            EventType::RecordFileComplete => Some(Rank::Completed),
            _ => None,
        }
    }

    /// From the stored number.
    pub fn from_i64(n: i64) -> Rank {
        match n {
            3 => Rank::Completed,
            2 => Rank::Failed,
            _ => Rank::Started,
        }
    }
}

/// One recorded file.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub id: String,
    pub state: RecordingState,
    pub rank: Rank,
    pub task_over: bool,
    pub project_id: String,
    pub publish_domain: String,
    pub app: String,
    pub stream: String,
    pub record_format: String,
    pub task_id: String,
    pub job_id: String,
    pub download_url: String,
    pub asset_id: String,
    pub play_url: String,
    pub file_size: Option<i64>,
    pub record_duration: Option<i64>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub obs_location: String,
    pub obs_bucket: String,
    pub obs_object: String,
    /// Sequence of the event that created the recording: the list order and cursor.
    pub first_sequence: i64,
    /// Sequence of the last event that changed it.
    pub last_sequence: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// The identity of the file a callback is about, or `None` for task-level events
/// (RECORD_START, RECORD_OVER), unknown types, and file events that carry no identity.
/// A file known only by its start is known by its format too: a stream recording HLS
/// and MP4 starts a file of each at the same instant. (Without a format, the key is the
/// start alone, as it always was.)
pub fn key(cb: &Callback) -> Option<String> {
    Rank::of(&cb.event_type)?;
    let local = if !cb.job_id.is_empty() {
        format!("job:{}", cb.job_id)
    } else if !cb.asset_id.is_empty() {
        format!("asset:{}", cb.asset_id)
    } else if !cb.obs_object.is_empty() {
        format!("obs:{}", cb.obs_object)
    } else {
        let start = cb.start_time?.timestamp_micros();
        match cb.record_format.as_str() {
            "" => format!("start:{start}"),
            format => format!("start:{start}:{format}"),
        }
    };
    Some(local)
}

/// The recording id for a callback: a digest of its scope and [`key`], so every replica
/// derives the same id.
pub fn id_for(cb: &Callback) -> Option<String> {
    let key = key(cb)?;
    let mut h = Sha256::new();
    for part in [
        &cb.project_id,
        &cb.publish_domain,
        &cb.app,
        &cb.stream,
        &key,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    Some(hex::encode(&h.finalize()[..16]))
}

fn state_of(rank: Rank, task_over: bool) -> RecordingState {
    match rank {
        Rank::Completed => RecordingState::Complete,
        Rank::Failed => RecordingState::Failed,
        Rank::Started if task_over => RecordingState::Ended,
        Rank::Started => RecordingState::Recording,
    }
}

/// Takes `src` unless it is empty or `dst` is set and not to be overwritten. Returns
/// whether `dst` changed.
fn merge_str(dst: &mut String, src: &str, overwrite: bool) -> bool {
    let take = !src.is_empty() && (overwrite || dst.is_empty()) && dst != src;
    if take {
        src.clone_into(dst);
    }
    take
}

/// [`merge_str`] for an optional value.
fn merge<T: Copy + PartialEq>(dst: &mut Option<T>, src: Option<T>, overwrite: bool) -> bool {
    let take = src.is_some() && (overwrite || dst.is_none()) && *dst != src;
    if take {
        *dst = src;
    }
    take
}

impl Recording {
    /// Folds a file-level callback into the recording it is about (`existing`, if any),
    /// whose id is `id` ([`id_for`] of the callback, computed once, before the writer).
    /// `task_over`: the task's RECORD_OVER has been stored. Returns `None` when the
    /// callback is not about a file.
    pub fn apply(
        existing: Option<Recording>,
        cb: &Callback,
        id: &str,
        task_over: bool,
        sequence: i64,
        now: DateTime<Utc>,
    ) -> Option<Recording> {
        let rank = Rank::of(&cb.event_type)?;
        debug_assert_eq!(id_for(cb).as_deref(), Some(id));
        let mut rec = existing.unwrap_or_else(|| Recording {
            id: id.to_owned(),
            state: state_of(rank, task_over),
            rank,
            task_over,
            project_id: cb.project_id.clone(),
            publish_domain: cb.publish_domain.clone(),
            app: cb.app.clone(),
            stream: cb.stream.clone(),
            record_format: String::new(),
            task_id: String::new(),
            job_id: String::new(),
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
            first_sequence: sequence,
            last_sequence: sequence,
            create_time: now,
            update_time: now,
        });
        // A stronger event's fields win; among completions, the one that ends later (a file
        // appended to after an interruption, as HLS recordings merged across breaks are).
        // Both rules pick the same winner in any order of arrival.
        let overwrite = rank > rec.rank
            || (rank == Rank::Completed
                && rec.rank == Rank::Completed
                && (cb.end_time, cb.file_size) > (rec.end_time, rec.file_size));
        // Every merge runs (no short-circuit); `changed` is whether any took a value.
        let changed = [
            merge_str(&mut rec.record_format, &cb.record_format, overwrite),
            merge_str(&mut rec.task_id, &cb.task_id, overwrite),
            merge_str(&mut rec.job_id, &cb.job_id, overwrite),
            merge_str(&mut rec.download_url, &cb.download_url, overwrite),
            merge_str(&mut rec.asset_id, &cb.asset_id, overwrite),
            merge_str(&mut rec.play_url, &cb.play_url, overwrite),
            merge(&mut rec.file_size, cb.file_size, overwrite),
            merge(&mut rec.record_duration, cb.record_duration, overwrite),
            merge(&mut rec.start_time, cb.start_time, overwrite),
            merge(&mut rec.end_time, cb.end_time, overwrite),
            merge(&mut rec.width, cb.width, overwrite),
            merge(&mut rec.height, cb.height, overwrite),
            merge_str(&mut rec.obs_location, &cb.obs_location, overwrite),
            merge_str(&mut rec.obs_bucket, &cb.obs_bucket, overwrite),
            merge_str(&mut rec.obs_object, &cb.obs_object, overwrite),
        ]
        .contains(&true);
        let state = rec.state;
        rec.rank = rec.rank.max(rank);
        rec.task_over |= task_over;
        rec.state = state_of(rec.rank, rec.task_over);
        // A late or repeated notice that tells nothing new (an early NEW_FILE_START after
        // the file completed) leaves when the recording last changed as it was.
        if changed || rec.state != state {
            rec.last_sequence = rec.last_sequence.max(sequence);
            rec.update_time = now;
        }
        Some(rec)
    }

    /// The task's RECORD_OVER arrived: a file still recording becomes ENDED. Returns
    /// whether anything changed (and so must be saved). Only a change of state moves
    /// `last_sequence` and `update_time`: a file already complete or failed only learns
    /// that its task is over, which changes nothing a reader sees.
    pub fn close_task(&mut self, sequence: i64, now: DateTime<Utc>) -> bool {
        if self.task_over {
            return false;
        }
        self.task_over = true;
        let state = state_of(self.rank, true);
        if state != self.state {
            self.state = state;
            self.last_sequence = self.last_sequence.max(sequence);
            self.update_time = now;
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::pb::v1::VodCallBackRequest;

    fn event(json: &str, edit: impl FnOnce(&mut VodCallBackRequest)) -> Callback {
        let mut req: VodCallBackRequest = serde_json::from_str(json).unwrap();
        edit(&mut req);
        Callback::parse(req).unwrap()
    }

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    /// One task's callbacks: two files, a failure, and the end of the task. The second
    /// file's NEW_FILE_START disagrees with its FILE_COMPLETE on the start time and format,
    /// as a real early notice may: the complete one must win in any order. That file is
    /// completed twice, the second time ending later: that completion must win in any
    /// order.
    pub(crate) fn task_events() -> Vec<Callback> {
        let start = include_str!("../../tests/payloads/lifecycle_2_record_new_file_start.json");
        let complete = include_str!("../../tests/payloads/lifecycle_3_record_file_complete.json");
        vec![
            event(
                include_str!("../../tests/payloads/lifecycle_1_record_start.json"),
                |_| {},
            ),
            event(start, |_| {}),
            event(complete, |_| {}),
            event(start, |r| {
                r.job_id = "job-0002".into();
                r.start_time = at(1_795_769_999);
                r.record_format = "FLV".into();
            }),
            event(complete, |r| {
                r.job_id = "job-0002".into();
                r.start_time = at(1_795_770_000);
                r.end_time = at(1_795_773_600);
                r.file_size = Some(5);
            }),
            event(complete, |r| {
                r.job_id = "job-0002".into();
                r.start_time = at(1_795_770_000);
                r.end_time = at(1_795_777_200);
                r.file_size = Some(9);
            }),
            event(
                include_str!("../../tests/payloads/record_failed.json"),
                |_| {},
            ),
            event(
                include_str!("../../tests/payloads/lifecycle_4_record_over.json"),
                |_| {},
            ),
        ]
    }

    /// Replays callbacks the way the store does (dedup by fingerprint, RECORD_OVER closes
    /// the task) and returns each recording without its arrival-dependent fields.
    fn replay(events: &[Callback]) -> BTreeMap<String, Recording> {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut seen = HashSet::new();
        let mut over = HashSet::new();
        let mut recordings: HashMap<String, Recording> = HashMap::new();
        for (seq, cb) in events.iter().enumerate() {
            if !seen.insert(cb.fingerprint()) {
                continue;
            }
            if cb.event_type == EventType::RecordOver {
                over.insert(cb.task_id.clone());
                for rec in recordings.values_mut().filter(|r| r.task_id == cb.task_id) {
                    rec.close_task(seq as i64, now);
                }
            } else if let Some(id) = id_for(cb) {
                let existing = recordings.remove(&id);
                let task_over = over.contains(&cb.task_id);
                if let Some(rec) = Recording::apply(existing, cb, &id, task_over, seq as i64, now) {
                    recordings.insert(id, rec);
                }
            }
        }
        recordings
            .into_iter()
            .map(|(id, mut r)| {
                (r.first_sequence, r.last_sequence) = (0, 0);
                (id, r)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_order_with_redeliveries_gives_the_same_recordings(
            (events, order_a, order_b, dups) in proptest::sample::subsequence(task_events(), 1..=8)
                .prop_flat_map(|events| {
                    let n = events.len();
                    (
                        Just(events),
                        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                        proptest::collection::vec(0..n, 0..5),
                    )
                })
        ) {
            let mut a: Vec<Callback> = order_a.iter().map(|&i| events[i].clone()).collect();
            for d in dups {
                a.push(events[d].clone());
            }
            let b: Vec<Callback> = order_b.iter().map(|&i| events[i].clone()).collect();
            prop_assert_eq!(replay(&a), replay(&b));
        }
    }

    #[test]
    fn the_full_task_completes_both_files_and_fails_one() {
        let recs = replay(&task_events());
        let count = |s| recs.values().filter(|r| r.state == s).count();
        assert_eq!(recs.len(), 3);
        assert_eq!(count(RecordingState::Complete), 2);
        assert_eq!(count(RecordingState::Failed), 1);
        let second = recs.values().find(|r| r.job_id == "job-0002").unwrap();
        assert_eq!(second.start_time.unwrap().timestamp(), 1_795_770_000);
        // Completed twice: the completion that ends later won.
        assert_eq!(second.end_time.unwrap().timestamp(), 1_795_777_200);
        assert_eq!(second.file_size, Some(9));
    }
}
