-- Replace the copy's rows of the keys in readonly_copy_changed_keys (their hashes) with the
-- warehouse's (none for a key the warehouse no longer has). Returns the rows deleted, then the
-- rows inserted.
DELETE FROM {copy} AS t
WHERE hash(t.{key}) IN (SELECT k FROM readonly_copy_changed_keys);

-- The rows are picked by rowid: DuckDB then reads the other columns of those rows only, where a
-- filter on the key read every column of every row (measured at 100,000 calls: 0.03 s against
-- 0.35 s for close.calls, whose `_raw` payloads are compressed).
INSERT INTO {copy}
SELECT * FROM {source}
WHERE rowid IN (
    SELECT rowid FROM {source} AS t
    WHERE hash(t.{key}) IN (SELECT k FROM readonly_copy_changed_keys)
)
