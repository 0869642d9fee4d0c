"""What each task of the Airflow DAG does, as plain functions over the orchestrator-free core.

Each function takes the settings as values and returns a small JSON-able summary (the task's
XCom). None of them imports Airflow: `dag.py` wraps them in tasks. In a deployment every task
runs in its own process, so nothing is shared between them but the warehouse file: each task
takes the warehouse's run lock for its own duration, and the tasks that call Close start the
embedded sandbox themselves when there is no key (its data is a function of seed and clock).
The tasks that call Close check, before they write, that it answers for the warehouse's
organization (`core/identity.py`); the others run only after the sync succeeded in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from croniter import croniter

from close_calls_pipeline.core import (
    build_plan,
    changed_row_tests,
    config,
    dbt_launcher,
    files,
    identity,
    locks,
    warehouse,
)
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.lake import one_instance_per_lake
from close_calls_pipeline.core.personal_data import HASH_KEY_ENV, CallPolice
from close_calls_pipeline.core.publish import publish_readonly_copy
from close_calls_pipeline.core.settings import PipelineSettings
from close_calls_pipeline.core.sync import SyncOptions, refresh_reference_tables, sync_calls

log = logging.getLogger(__name__)

# Below the project's dbt artefacts folder (under AIRFLOW_HOME): the latest Airflow run's only,
# so neither orchestrator reads the other's partial parse.
DBT_RUN_TARGET = "airflow"
# run_results.json statuses: which fail `dbt build` and which are warnings.
_DBT_FAILED = {"error", "fail", "runtime error"}
_DBT_WARNED = {"warn"}


class DbtBuildFailed(RuntimeError):
    """`dbt build` failed: a model error or an error-severity test failure."""

    def __init__(self, failed: list[str], returncode: int):
        self.failed = failed
        named = ", ".join(failed) if failed else "see the log above"
        super().__init__(f"dbt build failed (exit {returncode}): {named}")


# --- Close, or the embedded sandbox ----------------------------------------------------------------


@contextmanager
def close_client(settings: PipelineSettings) -> Iterator[CloseClient]:
    """A client of Close when there is a key, else of the embedded sandbox started for the
    duration of the block: the one place on the Airflow side that chooses. A base URL without a
    key is refused: it names an API the run could not use, and quietly syncing the sandbox
    instead would write another organization's data."""
    config.refuse_base_url_without_key(
        settings.api_key,
        settings.base_url,
        key_source="CLOSE_API_KEY (or the password of the DAG's close_conn_id connection)",
    )
    extra_call_fields = tuple(settings.extra_call_fields)
    if settings.api_key:
        with CloseClient(
            settings.api_key,
            _base_url(settings),
            pool_size=settings.workers,
            extra_call_fields=extra_call_fields,
        ) as client:
            yield client
        return
    from close_calls_pipeline.sandbox import start_sandbox

    server = start_sandbox(
        calls=settings.sandbox_calls,
        seed=settings.sandbox_seed,
        live=True,
        api_key=config.SANDBOX_API_KEY,
    )
    try:
        log.info(
            "No Close API key is configured (%s): using the embedded sandbox Close API at %s "
            "(%d calls, seed %d)",
            config.CLOSE_API_KEY_ENV,
            server.base_url,
            settings.sandbox_calls,
            settings.sandbox_seed,
        )
        with CloseClient(
            config.SANDBOX_API_KEY,
            server.base_url,
            pool_size=settings.workers,
            extra_call_fields=extra_call_fields,
        ) as client:
            yield client
    finally:
        server.stop()


def _base_url(settings: PipelineSettings) -> str:
    return settings.base_url or config.DEFAULT_BASE_URL


def source_name(settings: PipelineSettings) -> str:
    return "close" if settings.api_key else "sandbox"


def check_organization(settings: PipelineSettings, client: CloseClient) -> identity.Organization:
    """Before a task writes: the API answers for the warehouse's organization (or the warehouse
    is new, and becomes that organization's); `identity.WrongOrganizationError` if not."""
    organization = identity.organization_from_me(client.me(), is_sandbox=not settings.api_key)
    identity.check_organization(
        settings.warehouse_location,
        organization,
        api_base_url=_base_url(settings) if settings.api_key else None,
        lock_wait_seconds=settings.lock_wait_seconds,
        file_mode=settings.file_mode,
    )
    log.info(
        "Syncing %s into %s",
        organization.describe(),
        warehouse.describe(settings.warehouse_location),
    )
    return organization


@contextmanager
def run_lock(settings: PipelineSettings, owner: str) -> Iterator[None]:
    """The warehouse's run lock for one task (`locks.RunInProgressError` at once when another
    run, Dagster's or Airflow's, holds it). Meanwhile, whatever the task creates (DuckDB's WAL,
    dbt's files) is born with the `file_mode`'s modes, and the task's connections to a lake
    share one DuckDB instance (`lake.one_instance_per_lake`)."""
    with (
        files.restrictive_umask(settings.file_mode),
        locks.acquire_run_lock(
            warehouse.run_lock_anchor(settings.duckdb_path, settings.lake), owner=owner
        ),
        one_instance_per_lake(),
    ):
        yield


@contextmanager
def _warehouse(settings: PipelineSettings):
    con = warehouse.connect(
        settings.warehouse_location,
        memory_limit=settings.duckdb_memory_limit,
        lock_wait_seconds=settings.lock_wait_seconds,
        file_mode=settings.file_mode,
    )
    try:
        yield con
    finally:
        con.close()


# --- the tasks -----------------------------------------------------------------------------------


def reconcile_due(schedule: str | None, logical_date: datetime | None) -> bool:
    """Whether a scheduled run is the weekly reconcile: its logical date matches `schedule`."""
    return bool(schedule and logical_date and croniter.match(schedule, logical_date))


def refresh_reference(settings: PipelineSettings) -> dict[str, int]:
    """Replace close.outcomes and close.users with a fresh copy; rows per table."""
    with close_client(settings) as client:
        check_organization(settings, client)
        with _warehouse(settings) as con:
            counts = refresh_reference_tables(client, con)
    log.info("reference tables refreshed from %s: %s", source_name(settings), counts)
    return counts


def sync(
    settings: PipelineSettings,
    *,
    reconcile: bool,
    backfill_start: str | None,
    allow_mass_delete: bool = False,
) -> dict:
    """The calls sync (incremental, or a walk on the first run / a reconcile); what it did."""
    options = SyncOptions(
        backfill_start=config.parse_backfill_start(backfill_start or settings.backfill_start),
        reconcile=reconcile,
        workers=settings.workers,
        event_overlap_minutes=settings.event_overlap_minutes,
        max_delete_share=settings.max_reconcile_delete_share,
        allow_mass_delete=allow_mass_delete,
        personal_data=settings.personal_data,
        # Read when the task runs, from the worker's environment: never a DAG argument.
        hash_key=os.environ.get(HASH_KEY_ENV, "").encode() or None,
    )
    CallPolice(options.personal_data, options.hash_key)  # `hash` without a key: before any request
    with close_client(settings) as client:
        check_organization(settings, client)
        with _warehouse(settings) as con:
            summary = sync_calls(client, con, options)
            live_calls, deleted_calls = con.execute(
                "SELECT count(*) FILTER (WHERE _deleted_at IS NULL), "
                "count(*) FILTER (WHERE _deleted_at IS NOT NULL) FROM close.calls"
            ).fetchone()
    mark = summary.high_water_mark_after
    return {
        "source": source_name(settings),
        "sync_run_id": summary.run_id,
        "mode": summary.mode,
        "calls_inserted": summary.calls_inserted,
        "calls_updated": summary.calls_updated,
        "calls_deleted": summary.calls_deleted,
        "utterances_written": summary.utterances_written,
        "records_rejected": summary.records_rejected,
        "drift_calls": summary.drift_calls,
        "requests": summary.requests,
        "high_water_mark_after": mark.isoformat() if mark else None,
        "live_calls": live_calls,
        "deleted_calls": deleted_calls,
    }


def dbt_build(settings: PipelineSettings) -> dict:
    """`dbt build` of the bundled project on the warehouse, through `close-calls-dbt` (dbt dies
    with the task). dbt's own log (one line per model and test, with its status) goes to the task
    log, then one line per node from run_results.json; warnings are logged as warnings. Raises
    `DbtBuildFailed` naming the failed models and error-severity tests."""
    project = config.DBT_PROJECT_DIR
    dbt_vars = dbt_launcher.dbt_vars(
        str(settings.duckdb_path),
        settings.dbt_memory_limit,
        settings.reporting_timezone,
        lake=settings.lake,
    )
    # The same plan as the Dagster side: incremental, full when needed, nothing when unchanged.
    with _warehouse(settings) as con:
        fingerprint = build_plan.fingerprint(con, project, json.loads(dbt_vars))
        plan = build_plan.plan(con, fingerprint)
        build_plan.request(con, plan)
    if plan.mode == build_plan.UNCHANGED:
        log.info("dbt build: %s: no model built", plan.reason)
        return {"mode": plan.mode, "reason": plan.reason, "models": 0, "tests": 0, "warnings": []}
    log.info("dbt build: %s (%s)", plan.mode, plan.reason)
    # dbt opens the file itself and does not wait for it: wait here (bounded, logged). A lake
    # has no file to wait for.
    if settings.lake is None:
        locks.wait_until_writable(settings.duckdb_path, settings.lock_wait_seconds)
    target = settings.dbt_target_path / DBT_RUN_TARGET
    run_results = target / "run_results.json"
    run_results.unlink(missing_ok=True)  # never report an earlier run's results as this one's
    launcher = dbt_launcher.launcher_executable(dbt_launcher.real_dbt_executable())
    # dbt needs no Close key: it does not get one.
    environment = {k: v for k, v in os.environ.items() if k != config.CLOSE_API_KEY_ENV}
    tests = None
    if plan.tests_after_dbt:

        def compile_manifest() -> dict:
            compiled = target / changed_row_tests.COMPILE_FOLDER
            compile_command = [launcher, *changed_row_tests.COMPILE_ARGS, "--no-use-colors",
                               *dbt_launcher.project_args(compiled, dbt_vars)]  # fmt: skip
            if _stream(compile_command, environment, cwd=project) != 0:
                raise DbtBuildFailed([], 1)
            return json.loads((compiled / "manifest.json").read_text())

        cache = target / changed_row_tests.CACHE_FILE
        tests = changed_row_tests.compiled_tests(cache, fingerprint, compile_manifest)
    command = [
        launcher,
        *plan.dbt_command,
        "--no-use-colors",
        *dbt_launcher.project_args(target, dbt_vars),
    ]  # fmt: skip
    returncode = _stream(command, environment, cwd=project)
    results = _node_results(run_results)
    if tests is not None and returncode == 0:
        results += _tests_after_dbt(settings, tests)
    for unique_id, status, message in results:
        level = logging.WARNING if status in _DBT_WARNED | _DBT_FAILED else logging.INFO
        log.log(level, "dbt %s: %s%s", unique_id, status, f" ({message})" if message else "")
    failed = [unique_id for unique_id, status, _ in results if status in _DBT_FAILED]
    if returncode != 0 or failed:
        raise DbtBuildFailed(failed, returncode)
    return {
        "mode": plan.mode,
        "reason": plan.reason,
        "models": sum(1 for uid, _, _ in results if uid.startswith("model.")),
        "tests": sum(1 for uid, _, _ in results if uid.startswith(("test.", "unit_test."))),
        "warnings": [uid for uid, status, _ in results if status in _DBT_WARNED],
    }


def _tests_after_dbt(
    settings: PipelineSettings, tests: list[changed_row_tests.CompiledTest]
) -> list[tuple[str, str, str | None]]:
    """The data tests of an incremental build, run after it (core/changed_row_tests.py), as
    (unique_id, status, message); a failure makes the next build a full refresh."""
    with _warehouse(settings) as con:
        run = changed_row_tests.run_tests(con, tests)
    log.info("%s", changed_row_tests.summary(run))
    return [(result.test.unique_id, result.status, result.message) for result in run.results]


def _stream(command: list[str], environment: Mapping[str, str], cwd: Path) -> int:
    """Run `command`, each output line to the log as it comes; its exit code."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(environment),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("%s", line.rstrip())
        return process.wait()
    finally:
        if process.poll() is None:  # the task was stopped while dbt ran
            process.terminate()
            process.wait()


def _node_results(run_results: Path) -> list[tuple[str, str, str | None]]:
    """(unique_id, status, message) of every node dbt ran, or nothing when it wrote none."""
    if not run_results.exists():
        return []
    results = json.loads(run_results.read_text())["results"]
    return [
        (r["unique_id"], str(r["status"]), r.get("message") if r["status"] != "success" else None)
        for r in results
    ]


def write_call_report(settings: PipelineSettings) -> dict:
    """The offline HTML call report beside the warehouse; its path, period and headline."""
    from close_calls_pipeline.report import write_report

    report = write_report(
        str(settings.duckdb_path),
        file_mode=settings.file_mode,
        timezone=settings.reporting_timezone,
    )
    log.info("wrote the call report %s\n%s", report.path, report.markdown_summary)
    return {
        "path": str(report.path),
        "period": f"{report.period.start} to {report.period.end}",
        "figures": {k: v for k, v in report.figures.items() if v is not None},
    }


def publish(settings: PipelineSettings) -> dict:
    """Publish the read-only copy readers open (see `core/publish.py`); a lake has none: its
    readers attach it read-only (docs/lake.md)."""
    if settings.lake is not None:
        return {"written": False, "reason": "the warehouse is a DuckLake: readers attach it"}
    published = publish_readonly_copy(
        settings.duckdb_path,
        lock_wait_seconds=settings.lock_wait_seconds,
        file_mode=settings.file_mode,
    )
    mark = published.high_water_mark
    return {
        "path": published.path,
        "size_bytes": published.size_bytes,
        "method": published.method,
        "live_calls": published.live_calls,
        "high_water_mark": mark.isoformat() if mark else None,
    }
