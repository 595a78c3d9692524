-- How far back FindRecordings looks for a file covering an instant is bounded by the
-- longest span of the stream's own files, not of every file: one long file (an HLS
-- recording merged across breaks for weeks, or a file with a wrong end) made every
-- camera's lookups scan that far back.
CREATE TABLE stream_spans (
    stream          TEXT    PRIMARY KEY,
    max_span_us     BIGINT  NOT NULL          -- the longest [start, end) of its files, µs
);

INSERT INTO stream_spans (stream, max_span_us)
SELECT stream, greatest(max(end_time - start_time), 0) FROM recordings
WHERE start_time IS NOT NULL AND end_time IS NOT NULL
GROUP BY stream;

-- Kept by the database itself whenever a recording gets or changes its times, whichever
-- replica writes it: during a rolling upgrade, replicas of the previous version too.
-- (They read `meta.max_span_us`, which this version's writers still keep for them.)
CREATE FUNCTION recordings_widen_span() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.start_time IS NOT NULL AND NEW.end_time IS NOT NULL THEN
        INSERT INTO stream_spans (stream, max_span_us)
        VALUES (NEW.stream, greatest(NEW.end_time - NEW.start_time, 0))
        ON CONFLICT (stream) DO UPDATE SET max_span_us = excluded.max_span_us
        WHERE stream_spans.max_span_us < excluded.max_span_us;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER recordings_widen_span AFTER INSERT OR UPDATE OF start_time, end_time
ON recordings FOR EACH ROW EXECUTE FUNCTION recordings_widen_span();
