-- Drop the current rows of calls that the batch replaces (only run when some were changed): first
-- the utterances of copies this run landed itself (their count is taken back), then the others.
DELETE FROM close.call_transcript_utterances
WHERE call_id IN (SELECT id FROM changed_calls WHERE NOT is_new AND is_own);

DELETE FROM close.call_transcript_utterances
WHERE call_id IN (SELECT id FROM changed_calls WHERE NOT is_new AND NOT is_own);

DELETE FROM close.calls
WHERE id IN (SELECT id FROM changed_calls WHERE NOT is_new);
