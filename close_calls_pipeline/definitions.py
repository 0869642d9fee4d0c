"""The Dagster code location: Close calls -> DuckDB -> dbt, one asset graph.

Loaded by `workspace.yaml` (`dagster dev` from the repo root) and by
`dagster asset materialize -m close_calls_pipeline.definitions --select '*'`.

Configuration (environment, read at load; see .env.example):
  CLOSE_API_KEY       Close API key. Unset: each run talks to the embedded sandbox Close API.
  CLOSE_API_BASE_URL  default https://api.close.com/api/v1
  CLOSE_CALLS_DUCKDB  the warehouse file, default <repo>/data/close_calls.duckdb; made absolute
                      and exported here, so dbt (profiles.yml) opens exactly the same file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    LoggerDefinition,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from close_calls_pipeline.core import config
from close_calls_pipeline.dagster_component.assets import (
    INGESTION_KEYS,
    close_calls,
    close_calls_dbt,
    close_reference_tables,
)
from close_calls_pipeline.dagster_component.checks import ASSET_CHECKS
from close_calls_pipeline.dagster_component.publish import build_readonly_copy_asset
from close_calls_pipeline.dagster_component.resources import (
    CloseApiResource,
    WarehouseResource,
    dbt_resource,
)

# Last: the read-only copy readers open, published once everything above it is written.
readonly_copy = build_readonly_copy_asset(deps=[*INGESTION_KEYS, *close_calls_dbt.keys])

ASSETS = [close_calls, close_reference_tables, close_calls_dbt, readonly_copy]

PIPELINE_JOB = "close_calls_pipeline"
RECONCILE_JOB = "close_calls_full_reconcile"

ALL_ASSETS = AssetSelection.all()

# Incremental sync, reference tables, then `dbt build`: steps run in dependency order.
pipeline_job = define_asset_job(
    PIPELINE_JOB,
    selection=ALL_ASSETS,
    description="Incremental Close sync (Event Log since the high-water mark), outcomes and "
    "users, then `dbt build` of the analytics marts.",
)

reconcile_job = define_asset_job(
    RECONCILE_JOB,
    selection=ALL_ASSETS,
    config={"ops": {"close_calls": {"config": {"reconcile": True}}}},
    description="Full reconcile: walk every call by date_created, soft-delete the calls Close "
    "no longer has, then `dbt build`.",
)

hourly_schedule = ScheduleDefinition(
    name="close_calls_hourly",
    job=pipeline_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every hour: incremental sync, then dbt build.",
)


def build_definitions(
    *,
    close_api: CloseApiResource | None = None,
    duckdb_path: str | None = None,
    loggers: Mapping[str, LoggerDefinition] | None = None,
    lock_wait_seconds: float | None = None,
) -> Definitions:
    """The code location; tests and the main job pass their own Close API, DuckDB file, loggers
    and wait for the warehouse file (default: `config.lock_wait_seconds()`)."""
    path = duckdb_path or config.duckdb_path()
    wait = config.lock_wait_seconds() if lock_wait_seconds is None else lock_wait_seconds
    return Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[pipeline_job, reconcile_job],
        schedules=[hourly_schedule],
        resources={
            "close_api": close_api or CloseApiResource.from_env(),
            "duckdb_warehouse": WarehouseResource(path=path, lock_wait_seconds=wait),
            "dbt": dbt_resource(),
        },
        # DuckDB has one writer: one step at a time, ingestion before dbt.
        executor=in_process_executor,
        loggers=loggers,
    )


# dbt's profiles.yml reads this variable: make it the same absolute path as ours.
os.environ[config.CLOSE_CALLS_DUCKDB_ENV] = config.duckdb_path()

defs = build_definitions()
