-- ListRecordings by state reads the files recording now, the failed and the ended ones
-- (each few among all) from their own index, newest first, instead of walking every
-- recording for a page. A file is in the first only while it records; completed files,
-- the many, are in none: what they cost a new file is a test of its state.
CREATE INDEX recordings_recording ON recordings (first_sequence) WHERE state = 1;
CREATE INDEX recordings_failed ON recordings (first_sequence) WHERE state = 3;
CREATE INDEX recordings_ended ON recordings (first_sequence) WHERE state = 4;
