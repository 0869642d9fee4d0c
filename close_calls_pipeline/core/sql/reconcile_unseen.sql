-- After a complete date_created walk over [$window_start, $window_end): the live calls in that
-- range that the walk did not see. A quarantined record whose id could be read counts as seen.
-- These are candidates only: the sync asks Close for them by id, and only an answer without them
-- deletes them (a call can be missed by offset paging when another is deleted mid-walk).
SELECT t.id
FROM close.calls AS t
WHERE t._deleted_at IS NULL
  AND t.date_created >= $window_start
  AND t.date_created < $window_end
  AND t.id NOT IN (SELECT id FROM close.sync_seen_ids WHERE run_id = $run_id)
ORDER BY t.id;
