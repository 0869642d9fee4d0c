"""The Dagster code location, end to end: real sandbox over loopback, real DuckDB files, real dbt.

* the definitions load from workspace.yaml and form one lineage (dbt sources = ingestion assets);
* the whole graph materializes against a sandbox, checks pass, the marts match the sandbox truth;
  after sandbox mutations a second run (the `close-calls run` main job) updates the marts;
* each ingestion asset check fails on the corruption it guards against, and blocks dbt;
* the headless `dagster asset materialize --select '*'` works from the environment alone.
"""

from __future__ import annotations

import io
import os
import random
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from helpers.duck import query
from helpers.processes import run_ok
from helpers.truth import mart_counts, truth_counts

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.config import readonly_copy_path
from close_calls_pipeline.dagster_component.checks import (
    call_ids_unique,
    high_water_mark_sane,
    last_reconcile_found_no_drift,
    no_orphan_utterances,
)
from close_calls_pipeline.dagster_component.component import (
    CloseCallsComponent,
    build_definitions,
)
from close_calls_pipeline.dagster_component.keys import (
    CALLS_KEY,
    INGESTION_KEYS,
    OUTCOMES_KEY,
    PIPELINE_JOB,
    RECONCILE_JOB,
    USERS_KEY,
    UTTERANCES_KEY,
)
from close_calls_pipeline.dagster_component.project import load_component
from close_calls_pipeline.dagster_component.resources import (
    CloseApiResource,
    SandboxCloseApiResource,
)
from close_calls_pipeline.definitions import defs as load_repo_defs

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
CALLS = 300
INGESTION_CHECKS = {
    "call_ids_unique",
    "no_orphan_utterances",
    "high_water_mark_sane",
    "last_reconcile_found_no_drift",
}


# --- helpers -----------------------------------------------------------------------------------------


def sandbox_defs(sandbox, db_path: Path, **attributes) -> dg.Definitions:
    settings = CloseCallsComponent(duckdb_path=str(db_path), **attributes).settings(REPO_ROOT)
    return build_definitions(
        settings,
        close_api=CloseApiResource(api_key=sandbox.api_key, base_url=sandbox.base_url, workers=4),
    )


def run_job(definitions: dg.Definitions, job_name: str = PIPELINE_JOB, **kwargs):
    job = definitions.resolve_job_def(job_name)
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), **kwargs)


def check_evaluations(result) -> dict[tuple[str, str], object]:
    return {
        (
            e.event_specific_data.asset_key.to_user_string(),
            e.event_specific_data.check_name,
        ): e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "warehouse" / "close_calls.duckdb"
    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(path))
    return path


# --- the code location ------------------------------------------------------------------------------


def test_definitions_load_from_workspace_yaml(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop("CLOSE_API_KEY", None)
    done = run_ok(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert (
        "Validation successful for code location close_calls_pipeline" in done.stderr + done.stdout
    )


def test_one_lineage_from_ingestion_to_marts():
    defs = load_repo_defs()
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert set(INGESTION_KEYS) <= keys

    # every dbt source is one of the ingestion assets (no dangling source asset keys) ...
    dbt_sources = {
        parent
        for key in keys
        if graph.get(key).group_name == "analytics"
        for parent in graph.get(key).parent_keys
        if graph.get(parent).group_name != "analytics"
    }
    assert dbt_sources == set(INGESTION_KEYS)
    assert all(graph.get(k).is_materializable for k in keys)  # no external stubs
    # ... so the marts sit below close/calls
    fct_calls = dg.AssetKey(["analytics", "fct_calls"])
    assert fct_calls in keys
    assert CALLS_KEY in graph.get(dg.AssetKey(["staging", "stg_close__calls"])).parent_keys
    assert CALLS_KEY in dg.AssetSelection.assets(fct_calls).upstream().resolve(graph)
    for mart in (
        "call_metrics_daily",
        "call_metrics_by_disposition",
        "call_metrics_by_outcome",
        "call_metrics_by_user_daily",
    ):
        assert dg.AssetKey(["analytics", mart]) in keys

    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key in INGESTION_KEYS:
        spec = specs[key]
        assert spec.group_name == "close_ingestion"
        assert spec.kinds == {"python", "duckdb"}
        assert spec.description
        columns = spec.metadata["dagster/column_schema"].columns
        assert columns and all(c.type for c in columns)
    assert "_deleted_at" in [
        c.name for c in specs[CALLS_KEY].metadata["dagster/column_schema"].columns
    ]
    assert specs[CALLS_KEY].freshness_policy is None  # off by default (tests/test_settings.py)
    assert specs[fct_calls].group_name == "analytics"

    check_keys = graph.asset_check_keys
    assert {k.name for k in check_keys if k.asset_key in INGESTION_KEYS} == INGESTION_CHECKS
    assert any(k.asset_key == fct_calls for k in check_keys), "dbt tests are asset checks"

    assert {j.name for j in defs.resolve_all_job_defs()} >= {PIPELINE_JOB, RECONCILE_JOB}
    schedule = defs.resolve_schedule_def("close_calls_hourly")
    assert schedule.cron_schedule == "0 * * * *" and schedule.job_name == PIPELINE_JOB
    reconcile = defs.resolve_job_def(RECONCILE_JOB)
    assert reconcile.run_config["ops"]["close_calls"]["config"]["reconcile"] is True
    weekly = defs.resolve_schedule_def("close_calls_weekly_reconcile")
    assert weekly.job_name == RECONCILE_JOB
    assert weekly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_job_def(PIPELINE_JOB).executor_def.name == "in_process"


# --- full materialization, then an incremental run through the main job -------------------------


def test_full_graph_then_incremental_main_job(make_sandbox, db_path, monkeypatch, caplog):
    sandbox = make_sandbox(calls=CALLS, seed=7)
    definitions = sandbox_defs(sandbox, db_path, reporting_timezone="America/New_York")
    result = run_job(definitions)
    assert result.success
    assert_checks_explain_themselves(definitions, result, db_path)
    # the reporting_timezone setting reaches dbt (call_date) and the report (weekday x hour)
    local_date = "CAST(timezone('{zone}', coalesce(activity_at, created_at)) AS DATE)"
    not_new_york, not_utc = query(
        db_path,
        f"SELECT count(*) FILTER (WHERE call_date <> {local_date.format(zone='America/New_York')}), "
        f"count(*) FILTER (WHERE call_date <> {local_date.format(zone='UTC')}) "
        "FROM analytics.fct_calls",
    )[0]
    assert not_new_york == 0 and not_utc > 0
    assert (
        "Hour of the call (America/New_York)" in (db_path.parent / "call_report.html").read_text()
    )

    checks = check_evaluations(result)
    for name in INGESTION_CHECKS:
        asset = (
            "close/call_transcript_utterances" if name == "no_orphan_utterances" else "close/calls"
        )
        assert checks[(asset, name)].passed, name
    dbt_checks = {k: v for k, v in checks.items() if not k[0].startswith("close/")}
    assert len(dbt_checks) > 10, "dbt tests surface as asset checks"
    assert all(v.passed or v.severity == dg.AssetCheckSeverity.WARN for v in dbt_checks.values())

    calls_meta = result.asset_materializations_for_node("close_calls")[0].metadata
    assert calls_meta["mode"].value == "backfill"
    assert calls_meta["calls_inserted"].value == len(sandbox.store.truth())
    assert calls_meta["requests"].value > 0
    assert "high_water_mark_after" in calls_meta and "preview" in calls_meta
    assert sandbox.api_key not in str(calls_meta)
    assert mart_counts(db_path) == truth_counts(sandbox.store)

    # Close changes; the main job (`close-calls run`) picks it up incrementally.
    touched = sandbox.store.mutate_random(random.Random(1), new=5, updated=10, deleted=3)
    sandbox.store.advance(60)
    monkeypatch.setenv("CLOSE_API_KEY", sandbox.api_key)
    monkeypatch.setenv("CLOSE_API_BASE_URL", sandbox.base_url)
    from close_calls_pipeline.cli.run import run_pipeline

    out = io.StringIO()
    assert run_pipeline(out=out) == 0, out.getvalue()
    text = out.getvalue()
    created, deleted_ids = set(touched["created"]), set(touched["deleted"])
    assert f"incremental: {len(created - deleted_ids)} inserted" in text, text
    assert f"{len(deleted_ids - created)} deleted" in text, text
    assert str(db_path) in text and "analytics.call_metrics_daily" in text
    assert "close-calls ui" in text
    assert f"Call report: {db_path.parent / 'call_report.html'}" in text
    assert sandbox.api_key not in text
    assert mart_counts(db_path) == truth_counts(sandbox.store)
    deleted = "', '".join(touched["deleted"])
    assert query(
        db_path, f"SELECT count(*) FROM analytics.fct_calls WHERE call_id IN ('{deleted}')"
    ) == [(0,)]

    # More changes: an incremental dbt build (the run above was full: its reporting time zone
    # is not the first job's), below which the report and the read-only copy are written again.
    report, copy = db_path.parent / "call_report.html", readonly_copy_path(str(db_path))
    before = (report.stat().st_mtime_ns, copy.stat().st_mtime_ns)
    sandbox.store.mutate_random(random.Random(2), new=2, updated=4, deleted=1)
    exotic = sorted(sandbox.store.call_ids())[0]
    sandbox.store.update_call(exotic, status="exotic")
    sandbox.store.advance(60)
    out = io.StringIO()
    assert run_pipeline(out=out) == 0, out.getvalue()
    assert "dbt build: incremental" in out.getvalue(), out.getvalue()
    assert "data tests on the changed rows in" in out.getvalue(), out.getvalue()
    assert_incremental_build_reports_every_check(latest_run_events(), db_path, set(dbt_checks))
    # The copy the run before replaced was kept (core/publish.py), but its views were the first
    # job's, in another reporting time zone: the whole file is copied, and the metadata says why.
    (copy_metadata,) = [
        e.event_specific_data.materialization.metadata
        for e in latest_run_events()
        if e.is_step_materialization and e.asset_key == dg.AssetKey(["close", "readonly_copy"])
    ]
    assert copy_metadata["method"].value == "whole file"
    assert copy_metadata["why_whole_file"].value == "the warehouse's tables or views changed"
    # the run's event log (what the UI shows) says what the sync did and why dbt built what it did
    lines = latest_run_messages()
    messages = "\n".join(lines)
    assert "dbt build: incremental" in messages and "data tests on the changed rows" in messages
    assert re.search(r"sync \w+ done: \d+ inserted", messages), messages[-3000:]
    assert sandbox.api_key not in messages
    assert len(lines) == len(set(lines)), "a line logged twice"  # e.g. the copy's, the sync's
    # the check with no result (Dagster's "did not yield" line lists it) is named, with why
    assert re.search(r"run by full builds .*: unique_combination_of_columns_int_call_utt", messages)
    written = (report.stat().st_mtime_ns, copy.stat().st_mtime_ns)
    assert written[0] > before[0] and written[1] > before[1], out.getvalue()
    assert mart_counts(db_path) == truth_counts(sandbox.store)

    # Nothing changes in Close: no dbt model is built, the report and the read-only copy stay.
    builds = query(db_path, "SELECT count(*) FROM build_state.builds")
    sandbox.store.advance(60)
    out = io.StringIO()
    caplog.clear()
    assert run_pipeline(out=out) == 0, out.getvalue()
    assert "no change since the last run at" in out.getvalue(), out.getvalue()
    # the steps below dbt are skipped, and the lines say why: nothing failed
    skipped = [line for line in out.getvalue().splitlines() if "skipped" in line]
    assert any("call_report: skipped (nothing it depends on was built" in x for x in skipped)
    assert not any("failed" in line for line in skipped), skipped
    # Dagster's warning of each blocking check with no result stays out of the console
    assert "emitted no result" not in caplog.text, out.getvalue()
    assert any("no change since the last run at" in m for m in latest_run_messages())
    assert (report.stat().st_mtime_ns, copy.stat().st_mtime_ns) == written
    assert query(db_path, "SELECT count(*) FROM build_state.builds") == builds


def latest_run_events() -> list:
    """The events of the latest run recorded in this test's Dagster instance (DAGSTER_HOME)."""
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(limit=1)
    return [entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.dagster_event]


def latest_run_messages() -> list[str]:
    """The log lines (not the events) of the latest run in this test's Dagster instance."""
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(limit=1)
    return [
        entry.user_message for entry in instance.all_logs(run.run_id) if not entry.dagster_event
    ]


def assert_incremental_build_reports_every_check(events, db_path, dbt_checks) -> None:
    """An incremental build runs only dbt's tables, then every data test on the changed rows:
    each dbt check still reports (a warning on a changed call's new value included), and the
    views, not re-created, are reported materialized over the tables it wrote."""
    evaluated = {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
            e.event_specific_data
        for e in events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }  # fmt: skip
    # every dbt check but the one that runs on full builds only (its meta says why)
    reported = {k for k in evaluated if not k[0].startswith("close/")}
    assert reported < dbt_checks and len(reported) >= len(dbt_checks) - 1, dbt_checks - reported
    (skipped,) = dbt_checks - reported
    assert skipped[1].startswith("unique_combination_of_columns_int_call_utterances_sequenced")
    (status,) = [
        v for k, v in evaluated.items() if k[1] == "accepted_values_stg_close__calls_status"
    ]
    assert not status.passed and status.severity == dg.AssetCheckSeverity.WARN
    assert status.metadata["dagster_dbt/failed_row_count"].value == 1
    assert status.metadata["rows_tested"].value == "changed since the last complete build"
    # the new value warns wherever it is tested (the marts keep it as sent); nothing else fails
    failing = {k[1]: v for k, v in evaluated.items() if not v.passed}
    assert {"accepted_values_fct_calls_status", status.check_name} <= set(failing)
    assert all(v.severity == dg.AssetCheckSeverity.WARN for v in failing.values()), failing
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string():
            e.event_specific_data.materialization.metadata
        for e in events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }  # fmt: skip
    assert "not re-created" in str(materialized["analytics/call_metrics_daily"])
    assert "materialization" not in materialized["analytics/fct_calls"]
    assert query(db_path, "SELECT full_refresh, complete FROM build_state.builds "
                 "ORDER BY recorded_at DESC LIMIT 1") == [(False, True)]  # fmt: skip


def assert_checks_explain_themselves(definitions: dg.Definitions, result, db_path: Path) -> None:
    """Every check says what it guards; the expected outcome warning passes and says why."""
    specs = [spec for a in definitions.resolve_asset_graph().assets_defs for spec in a.check_specs]
    assert len(specs) > 10
    assert [spec.name for spec in specs if not (spec.description or "").strip()] == []
    outcome = check_evaluations(result)[("analytics/fct_calls", "calls_point_at_known_outcomes")]
    assert outcome.passed, "an expected warning is not shown as a failure"
    assert outcome.metadata["expected"].value is True
    assert "deleted outcomes" in outcome.metadata["expected_reason"].value
    assert outcome.description.startswith("Expected")
    (pointing,) = query(
        db_path,
        "SELECT count(*) FROM analytics.fct_calls "
        "WHERE outcome_id IS NOT NULL AND outcome_name IS NULL",
    )[0]
    assert pointing > 0, "the sandbox keeps calls whose outcome was deleted"
    assert outcome.metadata["dbt_outcome"].value == "warn"


# --- no API key: the embedded sandbox -------------------------------------------------------------


def test_without_a_key_the_embedded_sandbox_serves_the_run(db_path, monkeypatch):
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSE_API_BASE_URL", raising=False)
    settings = load_component(REPO_ROOT).settings(REPO_ROOT)  # this repository's defs.yaml
    assert settings.api_key is None and settings.duckdb_path == db_path
    assert isinstance(build_definitions(settings).resources["close_api"], SandboxCloseApiResource)

    monkeypatch.setenv("CLOSE_API_KEY", "")  # empty counts as unset
    assert load_component(REPO_ROOT).api_key is None
    monkeypatch.setenv("CLOSE_API_KEY", "from-the-env")
    key = load_component(REPO_ROOT).api_key
    assert isinstance(key, dg.EnvVar) and key.env_var_name == "CLOSE_API_KEY"  # read at launch
    resource = build_definitions(load_component(REPO_ROOT).settings(REPO_ROOT)).resources[
        "close_api"
    ]
    assert type(resource) is CloseApiResource and "from-the-env" not in repr(resource)

    settings.sandbox_calls = 50
    instance = dg.DagsterInstance.ephemeral()
    result = (
        build_definitions(settings)
        .resolve_job_def(PIPELINE_JOB)
        .execute_in_process(instance=instance, asset_selection=list(INGESTION_KEYS))
    )
    assert result.success
    meta = result.asset_materializations_for_node("close_calls")[0].metadata
    assert meta["source"].value == "sandbox"
    assert meta["live_calls"].value > 0
    assert all(c.passed for c in check_evaluations(result).values())
    # two steps (calls, reference tables), one sandbox for the run
    started = [
        e
        for e in instance.all_logs(result.run_id)
        if "embedded sandbox Close API at" in (e.user_message or "")
    ]
    assert len(started) == 1


# --- asset checks fail on what they guard against ------------------------------------------------


@pytest.fixture
def ingested(make_sandbox, db_path) -> tuple[dg.Definitions, Path]:
    """A warehouse after one ingestion run (no dbt), checks passing."""
    sandbox = make_sandbox(calls=100, seed=3)
    definitions = sandbox_defs(sandbox, db_path)
    result = run_job(
        definitions,
        asset_selection=[CALLS_KEY, UTTERANCES_KEY, OUTCOMES_KEY, USERS_KEY],
    )
    assert result.success
    assert all(c.passed for c in check_evaluations(result).values())
    return definitions, db_path


def _corrupt(db_path: Path, *statements: str) -> None:
    con = warehouse.connect(str(db_path))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def _mark_row(run_id: str, mark: datetime) -> str:
    """A sync_state row finished after every real run, with the given high-water mark."""
    finished_at = datetime.now(UTC) + timedelta(minutes=1)
    return (
        "INSERT INTO close.sync_state (run_id, mode, started_at, finished_at, "
        "high_water_mark_before, high_water_mark_after, calls_inserted, calls_updated, "
        "calls_deleted, utterances_written, records_rejected, requests, rate_limited, retries, "
        "seconds_waited) VALUES ("
        f"'{run_id}', 'incremental', TIMESTAMPTZ '{finished_at.isoformat()}', "
        f"TIMESTAMPTZ '{finished_at.isoformat()}', NULL, TIMESTAMPTZ '{mark.isoformat()}', "
        "0, 0, 0, 0, 0, 0, 0, 0, 0)"
    )


CORRUPTIONS = {  # check -> what breaks it (built when the test runs)
    "duplicate call id": (
        call_ids_unique,
        lambda: [
            (
                "INSERT INTO close.calls SELECT * FROM close.calls "
                "WHERE id = (SELECT min(id) FROM close.calls)"
            )
        ],
    ),
    "utterance of a missing call": (
        no_orphan_utterances,
        lambda: [
            (
                "INSERT INTO close.call_transcript_utterances VALUES "
                "('acti_missing', 'recording', 0, 'Speaker 1', 'contact', 0, 1, 'hello?', now(), "
                "true)"
            )
        ],
    ),
    "utterance of a deleted call": (
        no_orphan_utterances,
        lambda: [
            (
                "UPDATE close.calls SET _deleted_at = now() WHERE id = "
                "(SELECT min(call_id) FROM close.call_transcript_utterances)"
            )
        ],
    ),
    "high-water mark in the future": (
        high_water_mark_sane,
        lambda: [_mark_row("future", datetime.now(UTC) + timedelta(hours=3))],
    ),
    "high-water mark moving backwards": (
        high_water_mark_sane,
        lambda: [_mark_row("backwards", datetime(2020, 1, 1, tzinfo=UTC))],
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_asset_check_fails_on_corruption(ingested, corruption):
    definitions, db_path = ingested
    check, statements = CORRUPTIONS[corruption]
    resource = definitions.resources["duckdb_warehouse"]
    assert check(duckdb_warehouse=resource).passed
    _corrupt(db_path, *statements())
    failed = check(duckdb_warehouse=resource)
    assert not failed.passed
    assert failed.severity == dg.AssetCheckSeverity.ERROR


def test_failing_blocking_check_stops_dbt(ingested):
    definitions, db_path = ingested
    _corrupt(db_path, *CORRUPTIONS["utterance of a missing call"][1]())
    result = run_job(definitions, raise_on_error=False)
    assert not result.success
    assert not check_evaluations(result)[
        ("close/call_transcript_utterances", "no_orphan_utterances")
    ].passed
    built = {
        e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert CALLS_KEY in built
    assert not any(key.path[0] == "analytics" for key in built), "dbt ran on corrupt data"
    assert query(
        db_path, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'analytics'"
    ) == [(0,)]


def test_run_pipeline_fails_clearly_on_a_bad_key(make_sandbox, db_path, monkeypatch):
    sandbox = make_sandbox(calls=20, seed=5)
    monkeypatch.setenv("CLOSE_API_KEY", "not-the-key")
    monkeypatch.setenv("CLOSE_API_BASE_URL", sandbox.base_url)
    from close_calls_pipeline.cli.run import run_pipeline

    out = io.StringIO()
    assert run_pipeline(out=out) == 1
    text = out.getvalue()
    assert "FAILED" in text and "close_calls" in text
    assert "not-the-key" not in text
    assert run_pipeline(backfill_start="yesterday", out=io.StringIO()) == 2


# --- headless ------------------------------------------------------------------------------------------


def test_headless_dagster_asset_materialize(make_sandbox, tmp_path):
    sandbox = make_sandbox(calls=CALLS, seed=11)
    db_path = tmp_path / "headless.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "CLOSE_API_BASE_URL": sandbox.base_url,
        "CLOSE_API_KEY": sandbox.api_key,
        "CLOSE_CALLS_DUCKDB": str(db_path),
        "DAGSTER_HOME": str(home),
    }
    materialize = "-m dagster asset materialize -m close_calls_pipeline.definitions --select *"
    done = run_ok([sys.executable, *materialize.split()], cwd=REPO_ROOT, env=env, timeout=240)
    output = done.stdout + done.stderr
    assert "RUN_SUCCESS" in output
    assert sandbox.api_key not in output
    assert query(db_path, "SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL") == [
        (len(sandbox.store.truth()),)
    ]
    assert mart_counts(db_path) == truth_counts(sandbox.store)
    tables = {
        r[0]
        for r in query(
            db_path,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'",
        )
    }
    assert {
        "fct_calls",
        "call_metrics_daily",
        "call_metrics_by_disposition",
        "call_metrics_by_outcome",
        "call_metrics_by_user_daily",
    } <= tables


def test_the_drift_check_warns_with_the_count_when_a_reconcile_repaired_calls(ingested):
    definitions, db_path = ingested
    resource = definitions.resources["duckdb_warehouse"]
    assert last_reconcile_found_no_drift(duckdb_warehouse=resource).passed  # no reconcile yet
    finished_at = datetime.now(UTC) + timedelta(minutes=1)
    _corrupt(
        db_path,
        (
            "INSERT INTO close.sync_state (run_id, mode, started_at, finished_at, "
            "high_water_mark_before, high_water_mark_after, calls_inserted, calls_updated, "
            "calls_deleted, utterances_written, records_rejected, requests, rate_limited, retries, "
            "seconds_waited, drift_calls) VALUES ('weekly', 'reconcile', "
            f"TIMESTAMPTZ '{finished_at.isoformat()}', TIMESTAMPTZ '{finished_at.isoformat()}', "
            "NULL, NULL, 3, 4, 0, 0, 0, 50, 0, 0, 0, 7)"
        ),
    )
    result = last_reconcile_found_no_drift(duckdb_warehouse=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["drift_calls"].value == 7
