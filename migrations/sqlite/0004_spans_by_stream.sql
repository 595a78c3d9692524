-- How far back FindRecordings looks for a file covering an instant is bounded by the
-- longest span of the stream's own files, not of every file: one long file (an HLS
-- recording merged across breaks for weeks, or a file with a wrong end) made every
-- camera's lookups scan that far back.
CREATE TABLE stream_spans (
    stream          TEXT    PRIMARY KEY,
    max_span_us     INTEGER NOT NULL          -- the longest [start, end) of its files, µs
) WITHOUT ROWID;

INSERT INTO stream_spans (stream, max_span_us)
SELECT stream, max(max(end_time - start_time), 0) FROM recordings
WHERE start_time IS NOT NULL AND end_time IS NOT NULL
GROUP BY stream;

-- The writer widens a stream's span as its files get their times (`Spans` in
-- src/store/sqlite/writer.rs). It still keeps `meta.max_span_us`, the one bound of every
-- stream this replaces, for the previous version, should the service be rolled back.
