-- The keys ({key}, a call's id) whose rows differ between the warehouse's table and the previous
-- read-only copy's: another number of rows, or another sum of the rows' hashes ({source_rows} and
-- {copy_rows}: the tables' rows as hashed, see core/publish.py). A key is held as its hash, which
-- takes a third of the memory of an id (the join ran out of 256 MB at 1,000,000 calls with the
-- ids) and is never null: two keys with one hash are compared, and replaced, together.
-- Returns how many keys differ.
CREATE OR REPLACE TEMP TABLE readonly_copy_changed_keys AS
WITH source_keys AS (
    SELECT hash({key}) AS k, count(*) AS n, sum(hash(t)) AS h FROM {source_rows} AS t GROUP BY ALL
),
copy_keys AS (
    SELECT hash({key}) AS k, count(*) AS n, sum(hash(t)) AS h FROM {copy_rows} AS t GROUP BY ALL
)
SELECT coalesce(s.k, c.k) AS k
FROM source_keys AS s
FULL JOIN copy_keys AS c ON s.k = c.k
WHERE s.n IS DISTINCT FROM c.n OR s.h IS DISTINCT FROM c.h;

SELECT count(*) FROM readonly_copy_changed_keys
