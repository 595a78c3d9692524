-- An event row keeps the body as received and only what is looked up or filtered on
-- (dedup key, type, app, stream, the recording it updated). The callback's other fields
-- are read back from `raw_body`; as typed columns they repeated it and were about a
-- third of what each acknowledged callback wrote to disk.
ALTER TABLE events RENAME TO events_v2;

CREATE TABLE events (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_group     INTEGER NOT NULL,         -- the recording's first_sequence, else 0
    fingerprint     BLOB    NOT NULL,         -- idempotency key, see Callback::fingerprint
    received_at     INTEGER NOT NULL,         -- µs since the epoch
    event_type      TEXT    NOT NULL,         -- WatchEvents filters
    app             TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    recording_id    TEXT,
    recording_state INTEGER,                  -- the recording's state right after this event
    raw_body        TEXT    NOT NULL          -- the body as received (all fields, known or not)
);

INSERT INTO events
SELECT sequence, dedup_group, fingerprint, received_at, event_type, app, stream,
       recording_id, recording_state, raw_body
FROM events_v2 ORDER BY sequence;

-- AUTOINCREMENT's high-water mark moves with the rows (sequences are never reused).
DELETE FROM sqlite_sequence WHERE name = 'events';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', seq FROM sqlite_sequence WHERE name = 'events_v2';
DROP INDEX events_dedup;
DROP TABLE events_v2;

CREATE UNIQUE INDEX events_dedup ON events (dedup_group, fingerprint);
