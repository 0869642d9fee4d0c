-- Replace the copy's rows of the keys in readonly_copy_changed_keys with the warehouse's (none
-- for a key the warehouse no longer has). Returns the rows deleted, then the rows inserted.
DELETE FROM {copy} AS t
WHERE EXISTS (SELECT 1 FROM readonly_copy_changed_keys AS c WHERE c.k IS NOT DISTINCT FROM t.{key});

INSERT INTO {copy}
SELECT * FROM {source} AS t
WHERE EXISTS (SELECT 1 FROM readonly_copy_changed_keys AS c WHERE c.k IS NOT DISTINCT FROM t.{key})
