"""Asset checks on the ingestion tables: the invariants the sync promises.

They are blocking: when one fails, the dbt models below the checked asset are not built from
data that breaks the warehouse contract. Each check opens DuckDB briefly (in the same pool as the
steps that write it).
"""

from datetime import UTC, datetime, timedelta

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, asset_check

from close_calls_pipeline.dagster_component.keys import CALLS_KEY, UTTERANCES_KEY, WAREHOUSE_POOL
from close_calls_pipeline.dagster_component.resources import WarehouseResource

# How far ahead of this machine's clock the mark may be (clock skew with the Close servers).
FUTURE_TOLERANCE = timedelta(minutes=5)
SAMPLE = 10


def _sample(rows: list[tuple]) -> MetadataValue:
    return MetadataValue.json([[str(v) for v in row] for row in rows[:SAMPLE]])


@asset_check(
    asset=CALLS_KEY,
    name="call_ids_unique",
    blocking=True,
    pool=WAREHOUSE_POOL,
    description="Every call id appears once in close.calls (deleted calls included).",
)
def call_ids_unique(duckdb_warehouse: WarehouseResource) -> AssetCheckResult:
    with duckdb_warehouse.connect() as con:
        duplicates = con.execute(
            "SELECT id, count(*) AS n FROM close.calls GROUP BY id HAVING count(*) > 1 "
            "ORDER BY n DESC, id"
        ).fetchall()
    return AssetCheckResult(
        passed=not duplicates,
        metadata={"duplicate_ids": len(duplicates), "sample": _sample(duplicates)},
    )


@asset_check(
    asset=UTTERANCES_KEY,
    name="no_orphan_utterances",
    blocking=True,
    pool=WAREHOUSE_POOL,
    additional_deps=[CALLS_KEY],
    description="Every utterance belongs to a call that exists in close.calls and is not deleted.",
)
def no_orphan_utterances(duckdb_warehouse: WarehouseResource) -> AssetCheckResult:
    with duckdb_warehouse.connect() as con:
        orphans = con.execute(
            """
            SELECT u.call_id, count(*) AS utterances,
                   CASE WHEN any_value(c.id) IS NULL THEN 'missing call' ELSE 'deleted call' END
            FROM close.call_transcript_utterances u
            LEFT JOIN close.calls c ON c.id = u.call_id
            GROUP BY u.call_id
            HAVING bool_and(c.id IS NULL OR c._deleted_at IS NOT NULL)
            ORDER BY u.call_id
            """
        ).fetchall()
    return AssetCheckResult(
        passed=not orphans,
        metadata={
            "orphan_calls": len(orphans),
            "orphan_utterances": sum(row[1] for row in orphans),
            "sample": _sample(orphans),
        },
    )


@asset_check(
    asset=CALLS_KEY,
    name="high_water_mark_sane",
    blocking=True,
    pool=WAREHOUSE_POOL,
    description="The sync cursor (close.sync_state) is not in the future and never moved "
    "backwards: over the runs ordered by finished_at, and within each run.",
)
def high_water_mark_sane(duckdb_warehouse: WarehouseResource) -> AssetCheckResult:
    now = datetime.now(UTC)
    with duckdb_warehouse.connect() as con:
        runs = con.execute(
            """
            SELECT run_id, finished_at, high_water_mark_before, high_water_mark_after
            FROM close.sync_state
            WHERE high_water_mark_after IS NOT NULL
            ORDER BY finished_at, run_id
            """
        ).fetchall()
    if not runs:
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.WARN,
            metadata={"runs": 0},
            description="No completed sync run yet.",
        )
    backwards = []
    previous = None
    for run_id, finished_at, before, after in runs:
        if previous is not None and after < previous:
            backwards.append((run_id, finished_at, f"{previous} -> {after}"))
        elif before is not None and after < before:
            backwards.append((run_id, finished_at, f"{before} -> {after} within the run"))
        previous = after if previous is None else max(previous, after)
    newest = runs[-1][3]
    in_future = newest > now + FUTURE_TOLERANCE
    return AssetCheckResult(
        passed=not backwards and not in_future,
        metadata={
            "runs": len(runs),
            "high_water_mark": newest.astimezone(UTC).isoformat(),
            "checked_at": now.isoformat(),
            "in_future": in_future,
            "moves_backwards": len(backwards),
            "sample": _sample(backwards),
        },
    )


@asset_check(
    asset=CALLS_KEY,
    name="last_reconcile_found_no_drift",
    pool=WAREHOUSE_POOL,
    description="Warns when the latest reconcile walk repaired calls the incremental runs had "
    "missed (events Close published too late for the Event Log overlap): the warehouse is equal "
    "to Close again, but the Event Log overlap (the `event_overlap_minutes` setting) may be too "
    "short.",
)
def last_reconcile_found_no_drift(duckdb_warehouse: WarehouseResource) -> AssetCheckResult:
    with duckdb_warehouse.connect() as con:
        row = con.execute(
            "SELECT run_id, finished_at, drift_calls FROM close.sync_state "
            "WHERE mode = 'reconcile' ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description="No reconcile has run yet.",
            metadata={"drift_calls": 0},
        )
    run_id, finished_at, drift = row
    return AssetCheckResult(
        passed=not drift,
        severity=AssetCheckSeverity.WARN,
        description=f"The reconcile of {finished_at:%Y-%m-%d %H:%M} UTC repaired {drift or 0} "
        "calls the incremental runs had missed.",
        metadata={
            "drift_calls": drift or 0,
            "reconcile_run_id": run_id,
            "finished_at": finished_at.astimezone(UTC).isoformat(),
        },
    )


UNKNOWN_ENUM_VALUES_KEY = AssetKey(["analytics", "unknown_enum_values"])


@asset_check(
    asset=UNKNOWN_ENUM_VALUES_KEY,
    name="no_new_enum_values",
    pool=WAREHOUSE_POOL,
    description="Warns when Close sends an enumeration value (disposition, status, call_method, "
    "...) that the marts do not know yet; the marts still build, with the value as sent.",
)
def no_new_enum_values(duckdb_warehouse: WarehouseResource) -> AssetCheckResult:
    with duckdb_warehouse.connect() as con:
        rows = con.execute(
            "SELECT column_name, value, calls FROM analytics.unknown_enum_values "
            "ORDER BY calls DESC, column_name, value"
        ).fetchall()
    return AssetCheckResult(
        passed=not rows,
        severity=AssetCheckSeverity.WARN,
        description=", ".join(
            f"{column} = {value!r} on {calls} calls" for column, value, calls in rows
        )
        or "every value is known",
        metadata={
            "new_values": len(rows),
            "values": MetadataValue.md(
                "\n".join(
                    ["| column | value | calls |", "|---|---|---|"]
                    + [f"| {column} | {value} | {calls} |" for column, value, calls in rows]
                )
            ),
        },
    )


INGESTION_CHECKS = [
    call_ids_unique,
    no_orphan_utterances,
    high_water_mark_sane,
    last_reconcile_found_no_drift,
]
DBT_CHECKS = [no_new_enum_values]  # on dbt models: only with dbt_marts
