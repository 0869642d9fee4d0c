-- The newest dbt build recorded by the project's on-run-end hook (dbt_project/macros/
-- incremental_build.sql), with the calls changed since and the reconciles that repaired drift
-- since (a reconcile's repairs are rebuilt in full, as a safety net).
SELECT
    b.recorded_at,
    b.complete,
    b.fingerprint,
    (SELECT count(*) FROM close.calls WHERE _change_seq > b.through_seq) AS changed_calls,
    (
        SELECT count(*) FROM close.sync_state
        WHERE mode = 'reconcile' AND coalesce(drift_calls, 0) > 0 AND finished_at > b.recorded_at
    ) AS drift_repairs
FROM build_state.builds AS b
ORDER BY b.recorded_at DESC
LIMIT 1
