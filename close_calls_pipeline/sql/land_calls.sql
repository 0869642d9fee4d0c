-- Upsert one batch of typed calls (registered as `batch_calls`) and their utterances
-- (`batch_utterances`). Runs inside the caller's transaction. Only calls whose payload changed,
-- that are new, or that come back after a delete are rewritten, so an unchanged re-run is a no-op.
CREATE OR REPLACE TEMP TABLE changed_calls AS
SELECT b.id, t.id IS NULL AS is_new
FROM batch_calls AS b
LEFT JOIN close.calls AS t ON t.id = b.id
WHERE t.id IS NULL
   OR t._raw::VARCHAR IS DISTINCT FROM b._raw
   OR t._deleted_at IS NOT NULL;

DELETE FROM close.call_transcript_utterances
WHERE call_id IN (SELECT id FROM changed_calls);

INSERT INTO close.call_transcript_utterances BY NAME
SELECT u.* FROM batch_utterances AS u
WHERE u.call_id IN (SELECT id FROM changed_calls);

DELETE FROM close.calls
WHERE id IN (SELECT id FROM changed_calls WHERE NOT is_new);

INSERT INTO close.calls BY NAME
SELECT b.* FROM batch_calls AS b
WHERE b.id IN (SELECT id FROM changed_calls);
