-- A backfill batch: how many of its calls the walk may have landed before (their id hash is
-- known; a hash can be shared by two ids, so a hit is then checked by id). Then remember them.
SELECT count(*)
FROM close.sync_walk_hashes
WHERE id_hash IN (SELECT hash(id) FROM batch_calls);

INSERT INTO close.sync_walk_hashes
SELECT hash(id) FROM batch_calls;
