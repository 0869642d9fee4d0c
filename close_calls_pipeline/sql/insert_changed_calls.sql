-- Write the changed calls of the batch and their utterances.
INSERT INTO close.call_transcript_utterances BY NAME
SELECT u.* FROM batch_utterances AS u
WHERE u.call_id IN (SELECT id FROM changed_calls);

INSERT INTO close.calls BY NAME
SELECT b.*, hash(b._raw) AS _raw_hash,
       nullif(json_extract(b._raw, '$.custom_fields'), 'null') AS custom_fields  -- free-form JSON
FROM batch_calls AS b
WHERE b.id IN (SELECT id FROM changed_calls);
