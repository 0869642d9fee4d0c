-- A walk planned by a release that appended a backfill and removed repeated calls only at its
-- end, resumed by this one: keep the copy of each repeated call loaded last, and its utterances
-- (every batch had its own _loaded_at, which tells the copies apart).
CREATE OR REPLACE TEMP TABLE repeated_calls AS
SELECT id, max(_loaded_at) AS kept_loaded_at, count(*) - 1 AS extra_copies
FROM close.calls
GROUP BY id
HAVING count(*) > 1;

DELETE FROM close.call_transcript_utterances AS u
USING repeated_calls AS r
WHERE u.call_id = r.id AND u._loaded_at <> r.kept_loaded_at;

DELETE FROM close.calls AS c
USING repeated_calls AS r
WHERE c.id = r.id AND c._loaded_at <> r.kept_loaded_at;
