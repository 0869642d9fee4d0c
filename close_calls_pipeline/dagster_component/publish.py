"""Dagster asset `close/readonly_copy`: the read-only copy of the warehouse readers open.

It sits below every other asset (the ingestion tables and every dbt model), so in a run of the
pipeline jobs it is the last step, and it is skipped when a step above it fails (a failed sync,
a failed blocking check, a failed dbt build): readers keep the previous copy, in which the
sources and the marts agree, rather than a copy with new calls and stale or half-rebuilt marts.
Materializing it alone publishes the warehouse as it is. See `core/publish.py`. A warehouse in
a DuckLake has no copy: its readers attach the lake read-only (docs/lake.md).
"""

from collections.abc import Iterable

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from close_calls_pipeline.core import build_plan, config
from close_calls_pipeline.core.publish import publish_readonly_copy
from close_calls_pipeline.dagster_component.keys import READONLY_COPY_KEY, WAREHOUSE_POOL
from close_calls_pipeline.dagster_component.resources import WarehouseResource

PUBLISH_GROUP = "close_publish"


def build_readonly_copy_asset(deps: Iterable[AssetKey]) -> AssetsDefinition:
    """The publishing asset, below `deps` (pass every asset that writes the warehouse)."""

    @multi_asset(
        name="readonly_copy",  # the step's name, in the style of the others
        specs=[
            AssetSpec(
                READONLY_COPY_KEY,
                deps=sorted(set(deps), key=lambda key: key.to_user_string()),
                group_name=PUBLISH_GROUP,
                kinds={"duckdb"},
                description="A read-only copy of the warehouse for notebooks and other readers "
                "(`close_calls_readonly.duckdb` beside the warehouse file), replaced atomically "
                "at the end of every successful run: readers never block the runs, and always "
                "see the state of one whole run. Reconnect to see a newer run.",
            )
        ],
        pool=WAREHOUSE_POOL,
    )
    def readonly_copy(
        context: AssetExecutionContext, duckdb_warehouse: WarehouseResource
    ) -> MaterializeResult:
        if duckdb_warehouse.lake is not None:
            reason = (
                "the warehouse is a DuckLake: readers attach it read-only and see its last "
                "committed snapshot (docs/lake.md), so no copy is made"
            )
            context.log.info(f"read-only copy not written: {reason}")
            return MaterializeResult(metadata={"written": False, "reason": reason})
        copy = config.readonly_copy_path(duckdb_warehouse.path)
        with duckdb_warehouse.connect() as con:
            unchanged = build_plan.unchanged_reason(con)
        if unchanged and copy.exists():
            context.log.info(f"read-only copy kept: {unchanged}")
            return MaterializeResult(
                metadata={
                    "path": MetadataValue.path(str(copy)),
                    "written": False,
                    "reason": unchanged,
                }  # fmt: skip
            )
        published = publish_readonly_copy(
            duckdb_warehouse.path,
            lock_wait_seconds=duckdb_warehouse.lock_wait_seconds,
            file_mode=duckdb_warehouse.file_mode,
        )
        mark = published.high_water_mark
        finished = published.last_sync_finished_at
        return MaterializeResult(
            metadata={
                "path": MetadataValue.path(published.path),
                "written": True,
                "size_mb": MetadataValue.float(round(published.size_bytes / 1e6, 1)),
                "seconds": MetadataValue.float(round(published.seconds, 3)),
                "copy_seconds": MetadataValue.float(round(published.copy_seconds, 3)),
                "method": published.method,
                "rows_written": published.rows_written,
                "why_whole_file": published.why_whole_file,
                "live_calls": published.live_calls,
                "last_sync_finished_at": finished.isoformat() if finished else None,
                "high_water_mark": mark.isoformat() if mark else None,
            }
        )

    return readonly_copy
