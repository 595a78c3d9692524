-- Duplicates are looked up among the events of the file they are about: the unique key
-- becomes (dedup_group, fingerprint), where dedup_group is the first sequence of the
-- event's recording (0 for events that are not about a file). A new file's events then
-- land at the right edge of the index; keyed by the fingerprint alone (a random digest)
-- every insert dirtied a random index page, the largest share of what a commit wrote.
ALTER TABLE events RENAME TO events_v1;

CREATE TABLE events (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_group     INTEGER NOT NULL,         -- the recording's first_sequence, else 0
    fingerprint     BLOB    NOT NULL,         -- idempotency key, see Callback::fingerprint
    received_at     INTEGER NOT NULL,         -- µs since the epoch
    event_type      TEXT    NOT NULL,
    project_id      TEXT    NOT NULL,
    publish_domain  TEXT    NOT NULL,
    app             TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    record_format   TEXT    NOT NULL,
    task_id         TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    download_url    TEXT    NOT NULL,
    asset_id        TEXT    NOT NULL,
    play_url        TEXT    NOT NULL,
    file_size       INTEGER,
    record_duration INTEGER,
    start_time      INTEGER,                  -- µs since the epoch
    end_time        INTEGER,
    width           INTEGER,
    height          INTEGER,
    obs_location    TEXT    NOT NULL,
    obs_bucket      TEXT    NOT NULL,
    obs_object      TEXT    NOT NULL,
    auth_sign       TEXT    NOT NULL,
    auth_timestamp  INTEGER,
    recording_id    TEXT,
    recording_state INTEGER,                  -- the recording's state right after this event
    raw_body        TEXT    NOT NULL          -- the body as received (all fields, known or not)
);

INSERT INTO events
SELECT e.sequence,
       coalesce((SELECT r.first_sequence FROM recordings r WHERE r.id = e.recording_id), 0),
       e.fingerprint, e.received_at, e.event_type, e.project_id, e.publish_domain, e.app,
       e.stream, e.record_format, e.task_id, e.job_id, e.download_url, e.asset_id,
       e.play_url, e.file_size, e.record_duration, e.start_time, e.end_time, e.width,
       e.height, e.obs_location, e.obs_bucket, e.obs_object, e.auth_sign, e.auth_timestamp,
       e.recording_id, e.recording_state, e.raw_body
FROM events_v1 e ORDER BY e.sequence;

-- AUTOINCREMENT's high-water mark moves with the rows (sequences are never reused).
DELETE FROM sqlite_sequence WHERE name = 'events';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', seq FROM sqlite_sequence WHERE name = 'events_v1';
DROP TABLE events_v1;

CREATE UNIQUE INDEX events_dedup ON events (dedup_group, fingerprint);
