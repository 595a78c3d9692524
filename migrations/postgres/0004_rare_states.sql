-- ListRecordings of the failed, or ended, recordings (few among all) reads them from their
-- own index, newest first, instead of walking every recording for a page. Files in the
-- common states (recording, complete) are in neither: what they cost a new file is a test
-- of its state.
CREATE INDEX recordings_failed ON recordings (first_sequence) WHERE state = 3;
CREATE INDEX recordings_ended ON recordings (first_sequence) WHERE state = 4;
