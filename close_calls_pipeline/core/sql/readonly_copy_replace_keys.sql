-- Replace the copy's rows of the keys in readonly_copy_changed_keys (their hashes) with the
-- warehouse's (none for a key the warehouse no longer has). Returns the rows deleted, then the
-- rows inserted.
DELETE FROM {copy} AS t
WHERE hash(t.{key}) IN (SELECT k FROM readonly_copy_changed_keys);

INSERT INTO {copy}
SELECT * FROM {source} AS t
WHERE hash(t.{key}) IN (SELECT k FROM readonly_copy_changed_keys)
