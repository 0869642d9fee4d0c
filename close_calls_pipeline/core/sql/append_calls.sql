-- A backfill into an empty table: append the batch as it is, with no change detection (which
-- would scan the whole table per batch). A call the walk meets twice (a split window, offsets
-- shifted by a new call) is appended twice; remove_duplicate_calls.sql keeps the last copy when
-- the walk completes.
INSERT INTO close.call_transcript_utterances BY NAME
SELECT * FROM batch_utterances;

INSERT INTO close.calls BY NAME
SELECT b.*, hash(b._raw) AS _raw_hash
FROM batch_calls AS b;
