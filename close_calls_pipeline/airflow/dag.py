"""`build_dag()`: the Close calls pipeline as an Airflow 3 DAG over the orchestrator-free core.

    sync_calls >> reference_tables >> dbt_build >> call_report >> publish_readonly_copy

The tasks run one after another (DuckDB has one writer) and the DAG one run at a time
(`max_active_runs=1`). Settings are read from the environment when each task runs
(`settings.py`), the Close key with them, handed to Airflow's secret masker at once. Each task
holds the warehouse's run lock while it runs, the lock Dagster runs hold for a whole run: a task
that finds it held fails at once, naming the holder, without retrying. The tasks that call Close
first check that it answers for the warehouse's organization; the others run only after them.
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
from close_calls_pipeline.airflow.settings import check_overrides, task_settings
from close_calls_pipeline.core import config, identity, locks
from close_calls_pipeline.core.close_api.errors import CloseAuthError
from close_calls_pipeline.core.settings import PipelineSettings
from close_calls_pipeline.core.sync import MassDeleteError

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
    """The pipeline's DAG. `overrides` are settings (`core.settings.PipelineSettings` fields:
    e.g. `duckdb_path`, `workers`, `sandbox_calls`) that win over the environment; never the key.
    With `close_conn_id`, the key is that Airflow connection's password instead of
    `CLOSE_API_KEY` (an empty password: the sandbox)."""
    check_overrides(overrides)

    def settings() -> PipelineSettings:
        """Read when a task runs: the key (which also picks the default warehouse file) too."""
        key = {}
        if close_conn_id:
            key["api_key"] = (Connection.get(close_conn_id).password or "").strip() or None
        current = task_settings(os.environ, **overrides, **key)
        if current.api_key:
            mask_secret(current.api_key)  # Airflow redacts it from anything this process logs
        return current

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
            "allow_mass_delete": Param(
                False,
                type="boolean",
                description="Let a reconcile soft-delete more than max_reconcile_delete_share "
                "of the live calls (it stops otherwise: likelier a wrong key or an API fault).",
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
            return _locked(settings, tasks.refresh_reference)

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
            scheduled = dag_run.run_type == "scheduled"  # a str enum

            def sync(current: PipelineSettings) -> dict:
                reconcile = bool(params.get("reconcile")) or (
                    scheduled
                    and tasks.reconcile_due(current.reconcile_cron_schedule, dag_run.logical_date)
                )
                return tasks.sync(
                    current,
                    reconcile=reconcile,
                    backfill_start=params.get("backfill_start"),
                    allow_mass_delete=bool(params.get("allow_mass_delete")),
                )

            return _locked(settings, sync)

        @task(outlets=[MARTS_ASSET])
        def dbt_build() -> dict:
            """`dbt build`: the staging views and the marts, with their tests."""
            return _locked(settings, tasks.dbt_build)

        @task
        def call_report() -> dict:
            """The offline HTML call report beside the warehouse."""
            return _locked(settings, tasks.write_call_report)

        @task(outlets=[READONLY_COPY_ASSET])
        def publish_readonly_copy() -> dict:
            """The read-only copy of the warehouse readers open, replaced atomically."""
            return _locked(settings, tasks.publish)

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


# Failures retrying would not help: the task fails at once.
_FINAL_ERRORS = (
    locks.RunInProgressError,
    identity.WrongOrganizationError,
    identity.OrganizationUnknownError,
    MassDeleteError,
    ValueError,  # a setting refused (a base URL without a key, a bad backfill_start)
)


def _locked(
    read_settings: Callable[[], PipelineSettings], work: Callable[[PipelineSettings], T]
) -> T:
    """`work(settings)` under the warehouse's run lock. A bad setting, a lock held by another
    run, a warehouse of another organization or a key Close refuses fails the task at once, with
    no retry."""
    try:
        settings = read_settings()
        with tasks.run_lock(settings, _owner()):
            return work(settings)
    except CloseAuthError as error:
        raise AirflowFailException(f"Close refused the API key: {error}") from None
    except _FINAL_ERRORS as error:
        raise AirflowFailException(f"{type(error).__name__}: {error}") from None
