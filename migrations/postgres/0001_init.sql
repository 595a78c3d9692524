-- The same model as migrations/sqlite/0001_init.sql; see the comments there.

-- Events: one row per accepted callback. Sequences are assigned by the writer under an
-- advisory lock, so they are gap-free and commit in order, across replicas.
CREATE TABLE events (
    sequence        BIGINT  PRIMARY KEY,
    fingerprint     BYTEA   NOT NULL UNIQUE,
    received_at     BIGINT  NOT NULL,
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
    file_size       BIGINT,
    record_duration BIGINT,
    start_time      BIGINT,
    end_time        BIGINT,
    width           BIGINT,
    height          BIGINT,
    obs_location    TEXT    NOT NULL,
    obs_bucket      TEXT    NOT NULL,
    obs_object      TEXT    NOT NULL,
    auth_sign       TEXT    NOT NULL,
    auth_timestamp  BIGINT,
    recording_id    TEXT,
    recording_state INTEGER,
    raw_body        TEXT    NOT NULL
);

CREATE TABLE recordings (
    first_sequence  BIGINT  PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    last_sequence   BIGINT  NOT NULL,
    state           INTEGER NOT NULL,
    rank            INTEGER NOT NULL,
    task_over       BOOLEAN NOT NULL,
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
    file_size       BIGINT,
    record_duration BIGINT,
    start_time      BIGINT,
    end_time        BIGINT,
    width           BIGINT,
    height          BIGINT,
    obs_location    TEXT    NOT NULL,
    obs_bucket      TEXT    NOT NULL,
    obs_object      TEXT    NOT NULL,
    create_time     BIGINT  NOT NULL,
    update_time     BIGINT  NOT NULL
);

CREATE INDEX recordings_by_stream_start ON recordings (stream, start_time);
CREATE INDEX recordings_open_by_stream ON recordings (stream, start_time) WHERE end_time IS NULL;
CREATE INDEX recordings_by_stream_seq ON recordings (stream, first_sequence);
CREATE INDEX recordings_by_task ON recordings (project_id, task_id) WHERE task_id <> '';

CREATE TABLE tasks_over (
    project_id      TEXT    NOT NULL,
    task_id         TEXT    NOT NULL,
    sequence        BIGINT  NOT NULL,
    PRIMARY KEY (project_id, task_id)
);

CREATE TABLE meta (
    key             TEXT    PRIMARY KEY,
    value           BIGINT  NOT NULL
);
INSERT INTO meta (key, value) VALUES ('max_span_us', 0);
