-- A walk batch landed; `batch_windows` holds, for each window it advanced: the oldest call of the
-- batch in that window (a window is read newest first and a batch lands a prefix of what was
-- read, so every newer call of the window has landed), whether the window is done, and whether
-- it was read out of order (then it resumes from its start).
UPDATE close.sync_windows AS w
SET landed_down_to = CASE WHEN p.out_of_order THEN NULL
                          ELSE least(coalesce(w.landed_down_to, p.landed_down_to), p.landed_down_to)
                     END,
    done = w.done OR p.done
FROM batch_windows AS p
WHERE w.window_start = p.window_start;
