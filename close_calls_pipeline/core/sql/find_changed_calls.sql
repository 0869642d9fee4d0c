-- Which calls of the batch (`batch_calls`) must be written: new ones, ones whose payload changed,
-- and ones that come back after a delete. Comparing a hash keeps this a scan of narrow columns.
-- `is_own`: the row it replaces was landed by this same run ($own_since: when it started), e.g. a
-- walk meeting a call twice; such a call is neither "updated" nor drift. `is_drift`: changed in
-- Close before $drift_before (a reconcile: what the incremental should already have landed).
CREATE OR REPLACE TEMP TABLE changed_calls AS
SELECT b.id,
       t.id IS NULL AS is_new,
       coalesce(t._loaded_at >= $own_since, false) AS is_own,
       coalesce(b.date_updated < $drift_before, false) AS is_drift
FROM batch_calls AS b
LEFT JOIN existing_calls AS t ON t.id = b.id
WHERE t.id IS NULL
   OR t._raw_hash IS DISTINCT FROM hash(b._raw)
   OR t._deleted_at IS NOT NULL;
