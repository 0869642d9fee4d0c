-- A walk batch landed: each window it holds calls of has now landed down to its oldest call among
-- them (a window is read newest first, and a batch lands a prefix of what was read), unless it
-- was read out of order (`$out_of_order`: then it resumes from the start). `batch_created`: the
-- batch's date_created values.
UPDATE close.sync_windows AS w
SET landed_down_to = least(coalesce(w.landed_down_to, m.oldest), m.oldest)
FROM (
    SELECT s.window_start, min(b.date_created) AS oldest
    FROM close.sync_windows AS s
    JOIN batch_created AS b
      ON b.date_created >= s.window_start AND b.date_created < s.window_end
    GROUP BY s.window_start
) AS m
WHERE w.window_start = m.window_start
  AND NOT w.done
  AND NOT list_contains($out_of_order::TIMESTAMPTZ[], w.window_start);

UPDATE close.sync_windows
SET landed_down_to = NULL
WHERE list_contains($out_of_order::TIMESTAMPTZ[], window_start);
