-- After a complete date_created walk over [$window_start, $window_end): every live call in that
-- range that the walk did not see no longer exists in Close.
INSERT INTO deleted_calls
SELECT t.id, $deleted_at
FROM close.calls AS t
WHERE t._deleted_at IS NULL
  AND t.date_created >= $window_start
  AND t.date_created < $window_end
  AND t.id NOT IN (SELECT id FROM close.sync_seen_ids WHERE run_id = $run_id);
