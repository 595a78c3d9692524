-- Events: one row per accepted callback. `sequence` is the resume cursor of WatchEvents;
-- AUTOINCREMENT guarantees it never goes back, even after the newest row is deleted.
CREATE TABLE events (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     BLOB    NOT NULL UNIQUE,  -- idempotency key, see Callback::fingerprint
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

-- Recordings: one row per recorded file, folded from its events. Keyed by the sequence
-- of the event that created it, so new rows append instead of landing on random pages
-- (the id is a digest, random by design).
CREATE TABLE recordings (
    first_sequence  INTEGER PRIMARY KEY,      -- list order and page cursor (immutable)
    id              TEXT    NOT NULL UNIQUE,
    last_sequence   INTEGER NOT NULL,
    state           INTEGER NOT NULL,
    rank            INTEGER NOT NULL,
    task_over       INTEGER NOT NULL,
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
    start_time      INTEGER,
    end_time        INTEGER,
    width           INTEGER,
    height          INTEGER,
    obs_location    TEXT    NOT NULL,
    obs_bucket      TEXT    NOT NULL,
    obs_object      TEXT    NOT NULL,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

-- FindRecordings: files of a stream by start, bounded below by the longest span seen.
CREATE INDEX recordings_by_stream_start ON recordings (stream, start_time);
-- FindRecordings: files still open (no end_time yet).
CREATE INDEX recordings_open_by_stream ON recordings (stream, start_time) WHERE end_time IS NULL;
-- ListRecordings with a stream filter, newest first. (No such index for app, domain or
-- project: they have few distinct values, so walking first_sequence backwards is as good.)
CREATE INDEX recordings_by_stream_seq ON recordings (stream, first_sequence);
-- RECORD_OVER closes the open files of its task.
CREATE INDEX recordings_by_task ON recordings (project_id, task_id) WHERE task_id <> '';

-- Tasks whose RECORD_OVER has been stored (a later NEW_FILE_START is born ENDED).
CREATE TABLE tasks_over (
    project_id      TEXT    NOT NULL,
    task_id         TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    PRIMARY KEY (project_id, task_id)
) WITHOUT ROWID;

-- Small counters kept by the writer, e.g. the longest recording span in µs.
CREATE TABLE meta (
    key             TEXT    PRIMARY KEY,
    value           INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('max_span_us', 0);
