-- WatchEvents gives each event the recording as it was right after it, folded again from
-- the recording's stored events up to that one: find them by recording.
CREATE INDEX events_by_recording ON events (recording_id, sequence) WHERE recording_id IS NOT NULL;
