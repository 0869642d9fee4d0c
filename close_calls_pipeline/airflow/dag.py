"""`build_dag()`: the Close calls pipeline as an Airflow 3 DAG over the orchestrator-free core.

    sync_calls >> reference_tables >> dbt_build >> call_report >> publish_readonly_copy

The tasks run one after another (DuckDB has one writer) and the DAG one run at a time
(`max_active_runs=1`). Settings are read from the environment when each task runs
(`settings.py`); the Close key only there, by the tasks that call Close, and handed to Airflow's
secret masker at once. Each task holds the warehouse's run lock while it runs, the lock Dagster
runs hold for a whole run: a task that finds it held fails at once, naming the holder, without
retrying.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import DAG, Asset, Connection, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from close_calls_pipeline.airflow import tasks
from close_calls_pipeline.airflow.settings import (
    PipelineSettings,
    api_key_from_environment,
    check_overrides,
    settings_from_environment,
)
from close_calls_pipeline.core import config, locks
from close_calls_pipeline.core.close_api.errors import CloseAuthError

T = TypeVar("T")

# What the DAG writes, for DAGs scheduled on them (`schedule=[MARTS_ASSET]`).
WAREHOUSE_ASSET = Asset(name="close_calls.warehouse")  # the close.* tables the sync lands
MARTS_ASSET = Asset(name="close_calls.marts")  # the dbt models (staging .. analytics marts)
READONLY_COPY_ASSET = Asset(name="close_calls.readonly_copy")  # what readers open

SYNC_RETRIES = 3
# Runs start from the first schedule after the DAG is enabled (catchup=False): a fixed past date.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def build_dag(
    dag_id: str = "close_calls",
    schedule: str | None = config.DEFAULT_CRON_SCHEDULE,
    close_conn_id: str | None = None,
    **overrides: Any,
) -> DAG:
    """The pipeline's DAG. `overrides` are settings (`settings.PipelineSettings` fields: e.g.
    `duckdb_path`, `workers`, `sandbox_calls`) that win over the environment; never the key.
    With `close_conn_id`, the key is that Airflow connection's password instead of
    `CLOSE_API_KEY` (an empty password: the sandbox)."""
    check_overrides(overrides)

    def settings() -> PipelineSettings:
        return settings_from_environment(os.environ, **overrides)

    def api_key() -> str | None:
        if close_conn_id:
            key = (Connection.get(close_conn_id).password or "").strip() or None
        else:
            key = api_key_from_environment(os.environ)
        if key:
            mask_secret(key)  # Airflow redacts it from anything logged by this process
        return key

    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["close", "duckdb", "dbt"],
        doc_md=__doc__,
        params={
            "reconcile": Param(
                False,
                type="boolean",
                description="Walk every call and soft-delete the ones Close no longer has, "
                "instead of reading the Event Log (scheduled runs matching the weekly reconcile "
                "schedule do so anyway).",
            ),
            "backfill_start": Param(
                None,
                type=["null", "string"],
                description="ISO date (YYYY-MM-DD, UTC) where a first walk starts; "
                "empty: the setting, else the whole history.",
            ),
        },
    ) as dag:

        @task(outlets=[WAREHOUSE_ASSET])
        def reference_tables() -> dict[str, int]:
            """Replace close.outcomes and close.users with a fresh copy from Close."""
            current = settings()
            return _locked(current, lambda: tasks.refresh_reference(current, api_key()))

        @task(
            outlets=[WAREHOUSE_ASSET],
            retries=SYNC_RETRIES,
            retry_delay=timedelta(minutes=1),
            retry_exponential_backoff=2.0,
            max_retry_delay=timedelta(minutes=15),
        )
        def sync_calls() -> dict:
            """Sync Close calls and their transcripts (incremental, or a walk)."""
            context = get_current_context()
            params = context["params"]
            dag_run = context["dag_run"]
            current = settings()
            scheduled = dag_run.run_type == "scheduled"  # a str enum
            reconcile = bool(params.get("reconcile")) or (
                scheduled and tasks.reconcile_due(current.reconcile_schedule, dag_run.logical_date)
            )
            return _locked(
                current,
                lambda: tasks.sync(
                    current,
                    api_key(),
                    reconcile=reconcile,
                    backfill_start=params.get("backfill_start"),
                ),
            )

        @task(outlets=[MARTS_ASSET])
        def dbt_build() -> dict:
            """`dbt build`: the staging views and the marts, with their tests."""
            current = settings()
            return _locked(current, lambda: tasks.dbt_build(current))

        @task
        def call_report() -> dict:
            """The offline HTML call report beside the warehouse."""
            current = settings()
            return _locked(current, lambda: tasks.write_call_report(current))

        @task(outlets=[READONLY_COPY_ASSET])
        def publish_readonly_copy() -> dict:
            """The read-only copy of the warehouse readers open, replaced atomically."""
            current = settings()
            return _locked(current, lambda: tasks.publish(current))

        (
            sync_calls()
            >> reference_tables()
            >> dbt_build()
            >> call_report()
            >> publish_readonly_copy()
        )
    return dag


def _owner() -> str:
    """What the run lock file says about this task."""
    ti = get_current_context()["ti"]
    return f"Airflow DAG {ti.dag_id}, run {ti.run_id}, task {ti.task_id}"


def _locked(settings: PipelineSettings, work: Callable[[], T]) -> T:
    """`work()` under the warehouse's run lock. A lock held by another run, or a key Close
    refuses, fails the task with no retry: retrying would not help."""
    try:
        with tasks.run_lock(settings, _owner()):
            return work()
    except locks.RunInProgressError as error:
        raise AirflowFailException(str(error)) from None
    except CloseAuthError as error:
        raise AirflowFailException(f"Close refused the API key: {error}") from None
