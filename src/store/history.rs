//! The recording as it was right after a stored event, for events read back from the
//! store (a WatchEvents replay, and PostgreSQL's commits of every replica).
//!
//! The writer folds each callback into its recording and keeps only the result, so the
//! snapshot after an older event is folded again here from the recording's stored events
//! up to it, with the same [`Recording::apply`] and [`Recording::close_task`] the writer
//! ran, in the same order: the result is the recording the writer produced at that event.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::domain::recording;
use crate::domain::{Callback, EventType, Recording};
use crate::store::{Ended, StoredEvent};

/// A stored event of one of the page's recordings.
#[derive(Debug)]
pub struct Past {
    pub sequence: i64,
    pub received_at: DateTime<Utc>,
    pub recording_id: String,
    /// `None` when its stored body no longer parses: that recording is not folded again
    /// and its events keep the current recording (with the state stored with each event).
    pub callback: Option<Callback>,
}

/// When each task's RECORD_OVER was stored: (project id, task id) → (sequence, received).
pub type Overs = HashMap<(String, String), (i64, DateTime<Utc>)>;

/// The (project id, task id) pairs `past` names, whose RECORD_OVERs the fold needs.
pub fn tasks(past: &[Past]) -> HashSet<(String, String)> {
    past.iter()
        .filter_map(|p| p.callback.as_ref())
        .filter(|cb| !cb.task_id.is_empty())
        .map(|cb| (cb.project_id.clone(), cb.task_id.clone()))
        .collect()
}

/// Each recording of `page` (by id) with its first sequence and the sequence of the last
/// event of `page` about it: the fold of a recording needs its stored events up to there.
/// The files a RECORD_OVER of `page` may have ended (see [`task_ends`]) are added with
/// [`want`].
pub fn wanted(page: &[StoredEvent]) -> HashMap<String, (i64, i64)> {
    let mut wanted = HashMap::new();
    for event in page {
        if let Some(rec) = &event.recording {
            want(&mut wanted, &rec.id, rec.first_sequence, event.sequence);
        }
    }
    wanted
}

/// Adds a recording (`id`, its first sequence) whose fold must reach `upto` to `wanted`.
pub fn want(wanted: &mut HashMap<String, (i64, i64)>, id: &str, first: i64, upto: i64) {
    let entry = wanted.entry(id.to_owned()).or_insert((first, upto));
    entry.1 = entry.1.max(upto);
}

/// The RECORD_OVERs of `page` that name a task, as (sequence, project id, task id): the
/// files of that task created before it are the ones it may have ended, and their folds
/// must reach it ([`want`]).
pub fn task_ends(page: &[StoredEvent]) -> Vec<(i64, &str, &str)> {
    page.iter()
        .filter(|e| {
            e.callback.event_type == EventType::RecordOver && !e.callback.task_id.is_empty()
        })
        .map(|e| {
            let cb = &e.callback;
            (e.sequence, cb.project_id.as_str(), cb.task_id.as_str())
        })
        .collect()
}

/// Replaces the recording of each event of `page` (read as the current recording with
/// the state stored with the event) by the recording as it was right after the event,
/// and gives each RECORD_OVER the files it ended, as they were right after it.
/// `past`: every stored event of those recordings up to the page's last one about each,
/// and of the files of the page's RECORD_OVERs' tasks up to those (see [`wanted`]), in
/// sequence order; `overs`: the RECORD_OVERs of their [`tasks`].
pub fn attach(page: &mut [StoredEvent], past: &[Past], overs: &Overs) {
    let mut by_recording: HashMap<&str, Vec<&Past>> = HashMap::new();
    for p in past {
        by_recording.entry(&p.recording_id).or_default().push(p);
    }
    let mut snapshots: HashMap<i64, Recording> = HashMap::new();
    let mut ended: HashMap<i64, Vec<Recording>> = HashMap::new();
    let wanted: HashSet<i64> = page
        .iter()
        .filter(|e| e.recording.is_some() || e.callback.event_type == EventType::RecordOver)
        .map(|e| e.sequence)
        .collect();
    for (id, events) in by_recording {
        fold(id, &events, overs, |step, rec| match step {
            Step::Event(sequence) if wanted.contains(&sequence) => {
                snapshots.insert(sequence, rec.clone());
            }
            Step::Ended(sequence) if wanted.contains(&sequence) => {
                ended.entry(sequence).or_default().push(rec.clone());
            }
            _ => {}
        });
    }
    for event in page.iter_mut() {
        if let Some(files) = ended.remove(&event.sequence) {
            event.ended = Ended::oldest(files);
        }
    }
    for event in page {
        let Some(current) = &mut event.recording else {
            continue;
        };
        if let Some(mut then) = snapshots.remove(&event.sequence) {
            debug_assert_eq!(
                then.state, current.state,
                "the fold disagrees with the writer"
            );
            // The state stored with the event is what the writer decided; keep it.
            then.state = current.state;
            *current = then;
        }
    }
}

/// A point of a recording's fold.
enum Step {
    /// Right after its event of this sequence.
    Event(i64),
    /// Right after the RECORD_OVER of this sequence ended it.
    Ended(i64),
}

/// Folds one recording's events (in sequence order), calling `visit` with the recording
/// right after each, and after the RECORD_OVER of its task if that ended it. Stops at an
/// event whose callback is not what the writer folded.
fn fold(id: &str, events: &[&Past], overs: &Overs, mut visit: impl FnMut(Step, &Recording)) {
    let callbacks = events.iter().filter_map(|p| p.callback.as_ref());
    // The RECORD_OVERs of the tasks this recording's events name, in sequence order.
    let mut closes: Vec<(i64, DateTime<Utc>, &str, &str)> = callbacks
        .filter(|cb| !cb.task_id.is_empty())
        .filter_map(|cb| {
            let key = (cb.project_id.clone(), cb.task_id.clone());
            let (sequence, at) = overs.get(&key)?;
            Some((*sequence, *at, cb.project_id.as_str(), cb.task_id.as_str()))
        })
        .collect();
    closes.sort_unstable_by_key(|c| c.0);
    closes.dedup_by_key(|c| c.0);
    let mut closes = closes.into_iter().peekable();

    // RECORD_OVER of the recording's task: the writer ended the recording then, if it
    // was still recording.
    let close = |rec: &mut Option<Recording>,
                 (sequence, at, project, task): (i64, DateTime<Utc>, &str, &str),
                 visit: &mut dyn FnMut(Step, &Recording)| {
        if let Some(r) = rec
            .as_mut()
            .filter(|r| r.project_id == project && r.task_id == task)
        {
            let state = r.state;
            r.close_task(sequence, at);
            if r.state != state {
                visit(Step::Ended(sequence), r);
            }
        }
    };
    let mut rec: Option<Recording> = None;
    for p in events {
        let Some(cb) = &p.callback else { return };
        // Those stored before this event.
        while let Some(c) = closes.next_if(|c| c.0 < p.sequence) {
            close(&mut rec, c, &mut visit);
        }
        // A body that parses today into another file (or none) is not what the writer
        // folded: keep the current recording instead.
        if recording::id_for(cb).as_deref() != Some(id) {
            return;
        }
        let task_over = !cb.task_id.is_empty()
            && overs
                .get(&(cb.project_id.clone(), cb.task_id.clone()))
                .is_some_and(|(over, _)| *over < p.sequence);
        rec = Recording::apply(rec.take(), cb, id, task_over, p.sequence, p.received_at);
        match &rec {
            Some(r) => visit(Step::Event(p.sequence), r),
            None => return,
        }
    }
    for c in closes {
        close(&mut rec, c, &mut visit);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::EventType;
    use crate::domain::recording::{id_for, tests::task_events};

    /// What the writer had right after an event: its recording, and the files it ended.
    type Snapshot = (Option<Recording>, Ended);

    /// Stores `events` in order the way the writers do (dedup by fingerprint; RECORD_OVER
    /// remembers the task and ends its open files) and returns what a read of the events
    /// gives (each with the current recording and the state after it), what the fold
    /// needs, and the snapshot the writer had after each event.
    fn store(events: &[Callback]) -> (Vec<StoredEvent>, Vec<Past>, Overs, Vec<Snapshot>) {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let (mut seen, mut overs) = (HashSet::new(), Overs::new());
        let mut recordings: HashMap<String, Recording> = HashMap::new();
        let (mut stored, mut past, mut snapshots) = (Vec::new(), Vec::new(), Vec::new());
        for cb in events {
            if !seen.insert(cb.fingerprint()) {
                continue;
            }
            let sequence = i64::try_from(stored.len()).unwrap() + 1;
            let now = t0 + TimeDelta::seconds(sequence);
            let (mut snapshot, mut ended) = (None, Vec::new());
            if cb.event_type == EventType::RecordOver {
                overs
                    .entry((cb.project_id.clone(), cb.task_id.clone()))
                    .or_insert((sequence, now));
                for rec in recordings.values_mut().filter(|r| r.task_id == cb.task_id) {
                    let state = rec.state;
                    rec.close_task(sequence, now);
                    if rec.state != state {
                        ended.push(rec.clone());
                    }
                }
            } else if let Some(id) = id_for(cb) {
                let task_over = overs.contains_key(&(cb.project_id.clone(), cb.task_id.clone()));
                let existing = recordings.remove(&id);
                let rec = Recording::apply(existing, cb, &id, task_over, sequence, now).unwrap();
                snapshot = Some(rec.clone());
                recordings.insert(id.clone(), rec);
                past.push(Past {
                    sequence,
                    received_at: now,
                    recording_id: id,
                    callback: Some(cb.clone()),
                });
            }
            snapshots.push((snapshot, Ended::oldest(ended)));
            stored.push(StoredEvent {
                sequence,
                callback: cb.clone(),
                received_at: now,
                recording: None,
                ended: Ended::default(),
            });
        }
        // Read back: the current recording, with the state stored with the event.
        for (event, (snapshot, _)) in stored.iter_mut().zip(&snapshots) {
            event.recording = snapshot.as_ref().map(|then| Recording {
                state: then.state,
                ..recordings[&then.id].clone()
            });
        }
        (stored, past, overs, snapshots)
    }

    proptest! {
        #[test]
        fn the_fold_gives_back_what_the_writer_had_after_each_event(
            order in Just((0..task_events().len()).collect::<Vec<usize>>()).prop_shuffle(),
            redeliveries in proptest::collection::vec(0..task_events().len(), 0..4),
        ) {
            let all = task_events();
            let events: Vec<Callback> =
                order.iter().chain(&redeliveries).map(|&i| all[i].clone()).collect();
            let (mut page, past, overs, snapshots) = store(&events);
            attach(&mut page, &past, &overs);
            let got: Vec<Snapshot> = page.into_iter().map(|e| (e.recording, e.ended)).collect();
            prop_assert_eq!(got, snapshots);
        }
    }

    #[test]
    fn a_body_that_no_longer_parses_keeps_the_current_recording() {
        let (mut page, mut past, overs, snapshots) = store(&task_events());
        let current: Vec<Option<Recording>> = page.iter().map(|e| e.recording.clone()).collect();
        let snapshots: Vec<Option<Recording>> = snapshots.into_iter().map(|s| s.0).collect();
        assert_ne!(current, snapshots, "some recording changed after an event");
        for p in &mut past {
            p.callback = None;
        }
        attach(&mut page, &past, &overs);
        let got: Vec<Option<Recording>> = page.into_iter().map(|e| e.recording).collect();
        assert_eq!(got, current);
    }
}
