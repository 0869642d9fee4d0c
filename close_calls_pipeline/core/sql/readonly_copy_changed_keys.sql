-- The keys ({key}, a call's id) whose rows differ between the warehouse's table and the previous
-- read-only copy's: another number of rows, or another sum of the rows' hashes ({source_rows} and
-- {copy_rows}: the tables' rows as hashed, see core/publish.py). Returns how many keys differ.
CREATE OR REPLACE TEMP TABLE readonly_copy_changed_keys AS
WITH source_keys AS (
    SELECT {key} AS k, count(*) AS n, sum(hash(t)) AS h FROM {source_rows} AS t GROUP BY ALL
),
copy_keys AS (
    SELECT {key} AS k, count(*) AS n, sum(hash(t)) AS h FROM {copy_rows} AS t GROUP BY ALL
)
SELECT coalesce(s.k, c.k) AS k
FROM source_keys AS s
FULL JOIN copy_keys AS c ON s.k IS NOT DISTINCT FROM c.k
WHERE s.n IS DISTINCT FROM c.n OR s.h IS DISTINCT FROM c.h;

SELECT count(*) FROM readonly_copy_changed_keys
