"""`close-calls run`: the whole pipeline in one command (sync, reference tables, `dbt build`).

It runs the same Dagster job as the schedule (`close_calls_pipeline`), in this process, with
Dagster's own logging quiet and our progress lines on stdout instead. Against Close when
CLOSE_API_KEY is set; otherwise against the sandbox Close API, started on loopback for the run,
into its own warehouse (data/sandbox.duckdb). The run starts only if the API answers for the
organization the warehouse belongs to (`core/identity.py`, checked by the warehouse resource).
It ends with a short summary read from the warehouse and the marts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import TextIO

import duckdb

from close_calls_pipeline.cli.project import dagster_home, settings_of, venv_tool
from close_calls_pipeline.core import build_plan, config, files, locks, warehouse
from close_calls_pipeline.core.lake import Lake, connect_lake, one_instance_per_lake
from close_calls_pipeline.core.personal_data import (
    HASH_KEY_ENV,
    CallPolice,
    PersonalDataError,
)
from close_calls_pipeline.report import default_report_path
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS

log = logging.getLogger(__name__)


class _Progress:
    """Progress lines on a stream: elapsed time, then what happened."""

    def __init__(self, out: TextIO):
        self.out = out
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.t0:6.1f}s] {text}\n")
        self.out.flush()


class _PythonLogHandler(logging.Handler):
    """The `close_calls_pipeline` loggers (sync, resources) at INFO, as progress lines."""

    def __init__(self, progress: _Progress):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
            self.progress.line(f"  {prefix}{record.getMessage()}")
        except Exception:  # noqa: BLE001 - never let progress output break the run
            self.handleError(record)


def _root_error(error) -> str:
    """The innermost cause of a step error, on one line: its message, without the exception's
    class path (`close_calls_pipeline.core.close_api.errors.CloseAuthError: `)."""
    if error is None:
        return "failed"
    while error.cause is not None:
        error = error.cause
    lines = [line.strip() for line in error.message.strip().splitlines() if line.strip()]
    if not lines:
        return error.cls_name or "failed"
    head, separator, message = lines[0].partition(": ")
    is_class_path = error.cls_name and head.split(".")[-1] == error.cls_name
    return message if separator and is_class_path and message else lines[0]


def _metadata_value(event, name: str):
    entry = event.event_specific_data.materialization.metadata.get(name)
    return getattr(entry, "value", entry)


class _EventLines:
    """Turns Dagster events into progress lines: a line per asset step (start, end), the sync's
    figures, a line per ingestion check, and only the dbt tests that did not pass."""

    def __init__(self, asset_steps: set[str]):
        self.asset_steps = asset_steps
        self.built: dict[str, int] = {}
        self.checks: dict[str, dict[str, int]] = {}
        self.failures: dict[str, str] = {}  # error message -> the first step that failed with it

    def line(self, event, step_key: str | None) -> str | None:
        kind = event.event_type_value
        is_asset_step = step_key in self.asset_steps
        if kind == "STEP_START":
            return f"{step_key}: started" if is_asset_step else None
        if kind == "STEP_SUCCESS":
            if not is_asset_step:
                return None
            seconds = event.event_specific_data.duration_ms / 1000
            return f"{step_key}: done in {seconds:.1f} s{self._dbt_counts(step_key)}"
        if kind == "STEP_FAILURE":
            message = _root_error(event.event_specific_data.error)
            if message in self.failures:  # e.g. a bad key fails every step that calls Close
                return f"{step_key}: FAILED (the same error as {self.failures[message]})"
            self.failures[message] = step_key
            return f"{step_key}: FAILED: {message}"
        if kind == "STEP_SKIPPED":
            if self.failures or any(c.get("FAILED") for c in self.checks.values()):
                return f"{step_key}: skipped (an upstream step or blocking check failed)"
            return f"{step_key}: skipped (nothing it depends on was built in this run)"
        if kind == "ASSET_MATERIALIZATION":
            self.built[step_key] = self.built.get(step_key, 0) + 1
            return self._materialization(event)
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            outcome = (
                "passed"
                if data.passed
                else ("WARNING" if data.severity.value == "WARN" else "FAILED")
            )
            counts = self.checks.setdefault(step_key, {})
            counts[outcome] = counts.get(outcome, 0) + 1
            if data.passed and is_asset_step:
                return None  # dbt tests: counted, shown only when they do not pass
            return f"  check {data.asset_key.to_user_string()} {data.check_name}: {outcome}"
        return None

    def _dbt_counts(self, step_key: str) -> str:
        checks = self.checks.get(step_key)
        if not checks:
            return ""
        tests = ", ".join(f"{n} {outcome.lower()}" for outcome, n in sorted(checks.items()))
        return f" ({self.built.get(step_key, 0)} assets built; tests: {tests})"

    @staticmethod
    def _materialization(event) -> str | None:
        key = event.asset_key.to_user_string()
        if key == "close/calls":
            return (
                f"  {key}: {_metadata_value(event, 'mode')}: "
                f"{_metadata_value(event, 'calls_inserted')} inserted, "
                f"{_metadata_value(event, 'calls_updated')} updated, "
                f"{_metadata_value(event, 'calls_deleted')} deleted, "
                f"{_metadata_value(event, 'records_rejected')} rejected; "
                f"{_metadata_value(event, 'requests')} requests "
                f"({_metadata_value(event, 'rate_limited_429')} answered 429); "
                f"{_metadata_value(event, 'live_calls')} live calls"
            )
        if key == "close/readonly_copy":
            return None  # the publish logs its own line (core/publish.py)
        if key.startswith("close/"):
            return f"  {key}: {_metadata_value(event, 'dagster/row_count')} rows"
        return None


def _progress_logger(progress: _Progress, asset_steps: set[str]):
    from dagster import logger

    lines = _EventLines(asset_steps)

    @logger(description="Progress lines of `close-calls run` (steps, row counts, checks).")
    def progress_logger(_init_context) -> logging.Logger:
        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                meta = getattr(record, "dagster_meta", None) or {}
                event = meta.get("dagster_event")
                if event is None:
                    return
                try:
                    text = lines.line(event, meta.get("step_key") or event.step_key)
                except Exception:  # noqa: BLE001 - an unexpected event: skip the line, not the run
                    text = None
                if text:
                    progress.line(text)

        # A private logger outside the `logging` hierarchy: nothing propagates twice.
        dagster_logger = logging.Logger("close_calls_pipeline.run", level=logging.DEBUG)  # noqa: LOG001
        dagster_logger.addHandler(Handler())
        return dagster_logger

    return progress_logger


def _instance(project_dir: Path, file_mode: str = files.PRIVATE):
    """The project's persistent Dagster instance, so `close-calls ui` shows this run."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home(project_dir, file_mode))))


def _hours(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _project_env() -> str:
    """`NAME=value ` for the project settings this shell has set (never the key), so that a
    printed command pasted into a fresh shell opens the same warehouse and instance."""
    names = (
        config.CLOSE_CALLS_DUCKDB_ENV,
        config.CLOSE_CALLS_LAKE_CATALOG_ENV,
        config.CLOSE_CALLS_LAKE_DATA_PATH_ENV,
        config.CLOSE_API_BASE_URL_ENV,
        "DAGSTER_HOME",
    )
    return "".join(
        f"{name}={shlex.quote(os.environ[name])} " for name in names if os.environ.get(name)
    )


def _read_only(target: warehouse.Target) -> duckdb.DuckDBPyConnection:
    """The warehouse itself, opened read-only: the file, or the lake attached read-only."""
    if isinstance(target, Lake):
        return connect_lake(target, read_only=True)
    return duckdb.connect(str(target), read_only=True)


def _open_for_reading(target: warehouse.Target) -> duckdb.DuckDBPyConnection:
    """As a notebook reads the warehouse: the read-only copy the run published, or the lake."""
    if isinstance(target, Lake):
        return _read_only(target)
    return _read_only(config.readonly_copy_path(target))


def summary_lines(target: warehouse.Target, project_dir: Path, report: Path) -> list[str]:
    """Rows landed, headline metrics from the marts, what the warnings mean, where to look next
    (all read as a notebook would: from the read-only copy the run published, or the lake)."""
    con = _open_for_reading(target)
    try:
        live, deleted = con.execute(
            "SELECT count(*) FILTER (WHERE _deleted_at IS NULL), "
            "count(*) FILTER (WHERE _deleted_at IS NOT NULL) FROM close.calls"
        ).fetchone()
        (utterances,) = con.execute(
            "SELECT count(*) FROM close.call_transcript_utterances"
        ).fetchone()
        first, last, calls, answered, talk, cost = con.execute(
            "SELECT min(call_date), max(call_date), sum(calls), sum(answered_calls), "
            "sum(total_duration_seconds), sum(total_cost_usd) FROM analytics.call_metrics_daily"
        ).fetchone()
        (deleted_outcomes,) = con.execute(
            "SELECT count(*) FROM analytics.fct_calls "
            "WHERE outcome_id IS NOT NULL AND outcome_name IS NULL"
        ).fetchone()
        new_values = con.execute(
            "SELECT column_name, value, calls FROM analytics.unknown_enum_values "
            "ORDER BY calls DESC, column_name, value"
        ).fetchall()
    finally:
        con.close()
    calls, answered = int(calls or 0), int(answered or 0)
    rate = f"{answered / calls:.1%}" if calls else "n/a"
    marts = (
        (
            f"  analytics marts, {first} to {last}: {calls} calls, {answered} answered (answer "
            f"rate {rate}), talk time (call duration) {_hours(talk)}, cost "
            f"{float(cost or 0):.2f} USD"
        )
        if calls
        else "  analytics marts: no calls yet"
    )
    lines = [
        "",
        "Summary",
        f"  close.calls: {live} calls"
        + (f" ({deleted} more deleted in Close, kept with _deleted_at)" if deleted else ""),
        f"  close.call_transcript_utterances: {utterances} utterances",
        marts,
    ]
    unchanged = _unchanged_reason(target)
    if unchanged:
        lines.append(f"  {unchanged}: no dbt model built, report and read-only copy kept")
    if deleted_outcomes:
        lines.append(
            f"  {deleted_outcomes} calls point at outcomes deleted in Close: expected "
            "(Close keeps old outcome ids on calls; their outcome_name is null; the dbt "
            "test calls_point_at_known_outcomes warns about them)"
        )
    if new_values:
        lines.append("  New enumeration values (the marts still build; values are kept as sent):")
        lines += [f"    {column} = {value!r} on {n} calls" for column, value, n in new_values]
    daily = "select * from analytics.call_metrics_daily order by call_date desc limit 7"
    if isinstance(target, Lake):
        lines += ["", f"Lake: {target.describe()}   (readers attach it read-only: docs/lake.md)"]
        python = (
            "from close_calls_pipeline.core.lake import Lake, connect_lake; "
            f"connect_lake(Lake({target.catalog!r}, {target.data_path!r}), read_only=True)"
            f".sql({daily!r}).show()"
        )
    else:
        copy = str(config.readonly_copy_path(target))
        lines += [
            "",
            f"DuckDB file: {target}   (the runs write it: do not keep it open)",
            f"Read-only copy for notebooks: {copy}   (replaced by each run that changes something)",
        ]
        python = f"import duckdb; duckdb.connect({copy!r}, read_only=True).sql({daily!r}).show()"
    if report.exists():
        lines.append(f"Call report: {report}")
    ui = f"{shlex.quote(venv_tool('close-calls'))} ui --project-dir {shlex.quote(str(project_dir))}"
    lines += [
        f"Open the UI (this run is in it): {_project_env()}{ui}",
        "Query the marts:",
        f"  {shlex.quote(sys.executable)} -c {shlex.quote(python)}",
    ]
    return lines


def _high_water_mark(target: warehouse.Target):
    """The warehouse's high-water mark; None when it has none (or is not there yet)."""
    if not isinstance(target, Lake) and not Path(target).exists():
        return None
    try:
        con = _read_only(target)
    except duckdb.Error:
        return None  # held by a writer (or a lake not made yet): the run itself will say so
    try:
        return warehouse.high_water_mark(con)
    except duckdb.Error:
        return None  # no sync_state table yet
    finally:
        con.close()


def _unchanged_reason(target: warehouse.Target) -> str | None:
    """ "no change since the last run at ..." when this run found nothing to build (read from the
    warehouse itself: the read-only copy is the previous run's then)."""
    con = _read_only(target)
    try:
        return build_plan.unchanged_reason(con)
    finally:
        con.close()


def _source_line(settings) -> str:
    """The run's first line: which API it syncs (the organization is named once `/me/` answers,
    before any step)."""
    if not settings.api_key:
        return (
            f"CLOSE_API_KEY is not set: syncing the embedded sandbox Close API "
            f"({settings.sandbox_calls} calls in a {HISTORY_DAYS}-day window sliding with the "
            f"clock, seed {settings.sandbox_seed}), never a Close organization"
        )
    return f"syncing Close at {settings.base_url or config.DEFAULT_BASE_URL} (CLOSE_API_KEY set)"


def run_pipeline(
    *,
    project_dir: Path | None = None,
    reconcile: bool = False,
    full_refresh: bool = False,
    backfill_start: str | None = None,
    sandbox_calls: int | None = None,
    verbose: bool = False,
    out: TextIO | None = None,
    lock_wait_seconds: float | None = None,
    allow_mass_delete: bool = False,
    max_reconcile_delete_share: float | None = None,
    personal_data: dict[str, str] | None = None,
    file_mode: str | None = None,
    lake_catalog: str | None = None,
    lake_data_path: str | None = None,
) -> int:
    """Run the `close_calls_pipeline` job of the project in `project_dir` (default: the working
    directory) in this process; 0 on success, 1 on failure (also at once, starting nothing,
    when another run holds the warehouse)."""
    out = out or sys.stdout
    project_dir = (project_dir or Path.cwd()).resolve()
    progress = _Progress(out)
    try:
        config.parse_backfill_start(backfill_start)
    except ValueError as error:
        out.write(f"error: {error}\n")
        return 2

    package_logger = logging.getLogger("close_calls_pipeline")
    handler = _PythonLogHandler(progress)
    saved_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    dbt_output = io.StringIO()  # dbt's raw console output: shown only when the run fails
    # Dagster's own Python warnings (e.g. a blocking check with no result in a run that built no
    # model): with dbt's output, shown when the run fails; on the progress lines with --verbose.
    library_logger = logging.getLogger("dagster")
    library_handler = _PythonLogHandler(progress) if verbose else logging.StreamHandler(dbt_output)
    library_handler.setLevel(logging.WARNING)
    library_logger.addHandler(library_handler)
    library_propagates, library_logger.propagate = library_logger.propagate, False
    stack = contextlib.ExitStack()  # the run lock, held until the job has finished
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dagster beta/preview notices are not for this output
            settings = settings_of(project_dir)
            if sandbox_calls is not None:
                settings.sandbox_calls = sandbox_calls
            if lock_wait_seconds is not None:
                settings.lock_wait_seconds = lock_wait_seconds
            if max_reconcile_delete_share is not None:
                settings.max_reconcile_delete_share = max_reconcile_delete_share
            if personal_data:
                settings.personal_data = {**settings.personal_data.as_dict(), **personal_data}
            if file_mode is not None:
                settings.file_mode = file_mode
            if lake_catalog or lake_data_path:
                settings = settings.updated(
                    lake_catalog=lake_catalog or settings.lake_catalog,
                    lake_data_path=lake_data_path or settings.lake_data_path,
                )
            try:  # `hash` without a key: refused before anything starts
                CallPolice(settings.personal_data, os.environ.get(HASH_KEY_ENV, "").encode())
            except PersonalDataError as error:
                out.write(f"error: {error}\n")
                return 2
            path = str(settings.duckdb_path)
            target = settings.warehouse_location
            files.private_dir(settings.duckdb_path.parent, settings.file_mode)
            try:  # one run at a time per warehouse, refused before anything starts
                anchor = warehouse.run_lock_anchor(path, settings.lake)
                stack.enter_context(locks.acquire_run_lock(anchor, owner="close-calls run"))
            except locks.RunInProgressError as error:
                out.write(f"error: {error}\n")
                return 1
            mark = _high_water_mark(target) if backfill_start and not reconcile else None
            if mark is not None:
                progress.line(
                    f"WARNING: --backfill-start {backfill_start} is ignored: this warehouse "
                    f"already holds calls up to {mark:%Y-%m-%d %H:%M} UTC, and runs on from "
                    "there (it applies to the first run, and to a --reconcile)"
                )
            progress.line(_source_line(settings))
            progress.line("loading the Dagster definitions (dbt manifest, asset graph)")
            from dagster import colored_console_logger

            from close_calls_pipeline.dagster_component.component import build_definitions
            from close_calls_pipeline.dagster_component.keys import PIPELINE_JOB

            progress.line(f"warehouse: {warehouse.describe(target)}")
            asset_steps: set[str] = set()  # filled once the definitions exist
            loggers = {"progress": _progress_logger(progress, asset_steps)}
            if verbose:  # Dagster's own event stream too, DEBUG and all
                loggers["console"] = colored_console_logger
            defs = build_definitions(settings, loggers=loggers)
            asset_steps.update(
                a.node_def.name for a in defs.resolve_asset_graph().assets_defs if a.keys
            )
            job = defs.resolve_job_def(PIPELINE_JOB)
            sync_config = {"reconcile": reconcile, "allow_mass_delete": allow_mass_delete}
            if backfill_start:
                sync_config["backfill_start"] = backfill_start
            ops = {"close_calls": {"config": sync_config}}
            if settings.dbt_marts:  # without the models there is no dbt step to configure
                ops["dbt_build"] = {"config": {"full_refresh": full_refresh}}
            run_config = {
                "ops": ops,
                "loggers": {
                    "progress": {},
                    **({"console": {"config": {"log_level": "DEBUG"}}} if verbose else {}),
                },
            }
            progress.line(
                f"running the Dagster job {PIPELINE_JOB}{' (full reconcile)' if reconcile else ''}"
            )
            with contextlib.redirect_stdout(dbt_output):
                result = job.execute_in_process(
                    run_config=run_config,
                    instance=_instance(project_dir, settings.file_mode),
                    raise_on_error=False,
                )
    except Exception as error:  # noqa: BLE001 - before or around the run: say what, not a traceback
        out.write(f"\nerror: the pipeline could not run: {error}\n")
        return 1
    finally:
        stack.close()
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved_level)
        library_logger.removeHandler(library_handler)
        library_logger.propagate = library_propagates

    if not result.success:
        failed = any(e.event_type_value == "STEP_FAILURE" for e in result.all_events)
        out.write(
            f"\nThe pipeline FAILED (Dagster run {result.run_id})"
            + (": the FAILED lines above say why.\n" if failed else ".\n")
        )
        if not failed:  # before any step: a resource (the warehouse's run lock, the sandbox)
            for event in result.all_events:
                error = getattr(event.event_specific_data, "error", None)
                if event.is_failure and error is not None:
                    out.write(f"  {event.event_type_value}: {_root_error(error)}\n")
        tail = [line for line in dbt_output.getvalue().splitlines() if line.strip()][-25:]
        if tail:
            out.write(
                "Last lines of the dbt and Dagster output:\n"
                + "\n".join(f"  {line}" for line in tail)
                + "\n"
            )
        return 1

    progress.line(f"pipeline finished (Dagster run {result.run_id})")
    try:
        with one_instance_per_lake():  # the summary's reads of a lake share one DuckDB instance
            lines = summary_lines(target, project_dir, default_report_path(path))
        out.write("\n".join(lines) + "\n")
    except duckdb.Error as error:
        out.write(f"(summary unavailable: {error})\nwarehouse: {warehouse.describe(target)}\n")
    out.flush()
    return 0
