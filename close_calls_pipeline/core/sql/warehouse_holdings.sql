-- What a warehouse holds, to decide whose it is before anything is written: whether it holds any
-- data at all, and the organization ids its calls and outcomes carry (a warehouse written before
-- close.warehouse_identity existed is recognised by them).
SELECT
    (SELECT count(*) FROM close.calls)
        + (SELECT count(*) FROM close.outcomes)
        + (SELECT count(*) FROM close.users)
        + (SELECT count(*) FROM close.sync_state)
        + (SELECT count(*) FROM close.sync_windows)
        + (SELECT count(*) FROM close.rejected_records) AS data_rows,
    list_sort(list_distinct(list(organization_id))) AS organization_ids
FROM (
    SELECT organization_id FROM close.calls WHERE organization_id IS NOT NULL
    UNION
    SELECT organization_id FROM close.outcomes WHERE organization_id IS NOT NULL
);
