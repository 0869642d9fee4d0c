-- Which calls of the batch (`batch_calls`) must be written: new ones, ones whose payload changed,
-- and ones that come back after a delete. Comparing a hash keeps this a scan of two narrow columns.
CREATE OR REPLACE TEMP TABLE changed_calls AS
SELECT b.id, t.id IS NULL AS is_new
FROM batch_calls AS b
LEFT JOIN close.calls AS t ON t.id = b.id
WHERE t.id IS NULL
   OR t._raw_hash IS DISTINCT FROM hash(b._raw)
   OR t._deleted_at IS NOT NULL;
