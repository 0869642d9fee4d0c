-- Write the changed calls of the batch and their utterances.
INSERT INTO close.call_transcript_utterances BY NAME
SELECT u.* FROM batch_utterances AS u
WHERE u.call_id IN (SELECT id FROM changed_calls);

INSERT INTO close.calls BY NAME
SELECT b.*, hash(b._raw) AS _raw_hash, $change_seq AS _change_seq
FROM batch_calls AS b
WHERE b.id IN (SELECT id FROM changed_calls);
