-- Drop the current rows of calls that the batch replaces (only run when some were changed).
DELETE FROM close.call_transcript_utterances
WHERE call_id IN (SELECT id FROM changed_calls WHERE NOT is_new);

DELETE FROM close.calls
WHERE id IN (SELECT id FROM changed_calls WHERE NOT is_new);
