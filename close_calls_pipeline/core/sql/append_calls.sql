-- Every call of the batch is new to the table (find_existing_calls.sql found no row for any of
-- them): append the batch and its utterances as they are, with no filter to evaluate.
INSERT INTO close.call_transcript_utterances BY NAME
SELECT * FROM batch_utterances;

INSERT INTO close.calls BY NAME
SELECT b.*, hash(b._raw) AS _raw_hash, $change_seq AS _change_seq
FROM batch_calls AS b;
