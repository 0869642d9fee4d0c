-- Soft-delete the calls listed in `deleted_calls` (id, deleted_at) and drop their utterances;
-- their personal fields are then erased (erase_calls.sql, run by warehouse.mark_deleted).
-- Returns nothing; the caller counts with `changes` below.
CREATE OR REPLACE TEMP TABLE newly_deleted AS
SELECT t.id, d.deleted_at
FROM close.calls AS t
JOIN deleted_calls AS d ON d.id = t.id
WHERE t._deleted_at IS NULL;

UPDATE close.calls AS t
SET _deleted_at = n.deleted_at, _change_seq = $change_seq
FROM newly_deleted AS n
WHERE t.id = n.id;

DELETE FROM close.call_transcript_utterances
WHERE call_id IN (SELECT id FROM deleted_calls);
