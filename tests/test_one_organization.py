"""A warehouse belongs to one Close organization (issue 19).

A warehouse built with organization A's key is then run against: no key (the embedded sandbox),
no key with `--reconcile`, organization B's key, and a base URL without a key; each through
`close-calls run` (a subprocess, as a user starts it) and through the Dagster jobs (in process,
a dbt-only launch too). Every one fails before writing: the tables, the read-only copy and the
report are unchanged. Then A's key succeeds and the warehouse equals A's truth. Trying the sandbox
and then going live ends with a warehouse holding only the live organization; `close-calls
start-over` moves a warehouse aside; a reconcile facing a mass delete stops, and deletes only
when told to.

Organizations A and B are two sandboxes over loopback, with their own organization ids.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers.duck import query
from helpers.truth import assert_warehouse_matches_truth

from close_calls_pipeline.core import config, locks, warehouse
from close_calls_pipeline.core.identity import (
    Organization,
    OrganizationUnknownError,
    organization_from_me,
)
from close_calls_pipeline.core.start_over import move_warehouse_aside
from close_calls_pipeline.dagster_component.component import (
    CloseCallsComponent,
    build_definitions,
)
from close_calls_pipeline.dagster_component.keys import (
    CALLS_KEY,
    INGESTION_KEYS,
    PIPELINE_JOB,
    RECONCILE_JOB,
    UTTERANCES_KEY,
)
from close_calls_pipeline.report import default_report_path
from close_calls_pipeline.sandbox import start_sandbox

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ORG_A, ORG_B = "orga_test_alpha", "orga_test_beta"
EMBEDDED = f"orga_sandbox_{config.SANDBOX_SEED}"
KEY = "test-key"


# --- organizations A and B, and A's warehouse ------------------------------------------------------


@pytest.fixture(scope="module")
def org_a():
    server = start_sandbox(
        calls=300, seed=61, organization_id=ORG_A, organization_name="Alpha", api_key=KEY
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def org_b():
    server = start_sandbox(
        calls=200, seed=62, organization_id=ORG_B, organization_name="Beta", api_key=KEY
    )
    yield server
    server.stop()


def settings_for(root: Path, **attributes):
    return CloseCallsComponent(**attributes).settings(root)


def run_job(settings, job: str = PIPELINE_JOB, **kwargs):
    definitions = build_definitions(settings)
    return definitions.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, **kwargs
    )


@pytest.fixture(scope="module")
def a_warehouse(org_a, tmp_path_factory) -> Path:
    """A's warehouse: the whole pipeline (sync, dbt, report, read-only copy) with A's key."""
    db_path = tmp_path_factory.mktemp("org_a") / "data" / "close_calls.duckdb"
    settings = settings_for(
        REPO_ROOT, duckdb_path=str(db_path), api_key=KEY, base_url=org_a.base_url
    )
    assert run_job(settings).success
    assert default_report_path(db_path).is_file()
    return db_path


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def state(db_path: Path) -> dict:
    """What a failed run must leave as it was."""
    tables = {
        name: query(db_path, f"SELECT * EXCLUDE (_loaded_at) FROM close.{name} ORDER BY ALL")
        for name in ("users", "outcomes")
    }
    return {
        **tables,
        "calls": query(
            db_path,
            "SELECT count(*), count(_deleted_at), max(_loaded_at), list(DISTINCT organization_id) "
            "FROM close.calls",
        ),
        "utterances": query(db_path, "SELECT count(*) FROM close.call_transcript_utterances"),
        "sync_state": query(db_path, "SELECT * FROM close.sync_state ORDER BY finished_at"),
        "identity": query(db_path, "SELECT * FROM close.warehouse_identity"),
        "marts": query(db_path, "SELECT count(*), sum(calls) FROM analytics.call_metrics_daily"),
        "copy": _digest(config.readonly_copy_path(db_path)),
        "report": _digest(default_report_path(db_path)),
    }


def activity_requests(server) -> int:
    """Requests for calls or events: a run that asked for any had started syncing."""
    return sum(
        n
        for (endpoint, _), n in server.stats()["by_endpoint"].items()
        if not endpoint.startswith(("me", "user", "outcome"))
    )


# --- through `close-calls run` ----------------------------------------------------------------------


def close_calls(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "close-calls"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def clean_env(db_path: Path, **extra: str) -> dict[str, str]:
    """A fresh shell with no Close settings but those given."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "DAGSTER_HOME": str(db_path.parent / "dagster_home"),
        "CLOSE_CALLS_DUCKDB": str(db_path),
        **extra,
    }


def test_other_organizations_never_write_a_warehouse_through_the_cli(a_warehouse, org_a, org_b):
    before = state(a_warehouse)
    attempts = {
        "no key": ({}, ["--sandbox-calls", "200"], EMBEDDED),
        "no key, reconcile": ({}, ["--sandbox-calls", "200", "--reconcile"], EMBEDDED),
        "B's key": ({"CLOSE_API_KEY": KEY, "CLOSE_API_BASE_URL": org_b.base_url}, [], ORG_B),
    }
    for name, (extra, args, other) in attempts.items():
        done = close_calls(clean_env(a_warehouse, **extra), "run", *args)
        output = done.stdout + done.stderr
        assert done.returncode == 1, (name, output[-3000:])
        refusal = [line for line in output.splitlines() if ORG_A in line and other in line]
        assert refusal and "start-over" in refusal[0], (name, output[-3000:])
        assert "Nothing was written" in refusal[0]
        assert KEY not in output
        assert state(a_warehouse) == before, name
    assert activity_requests(org_b) == 0, "B was synced from"

    done = close_calls(clean_env(a_warehouse, CLOSE_API_BASE_URL=org_a.base_url), "run")
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "CLOSE_API_BASE_URL is set" in output and "set CLOSE_API_KEY" in output, output[-3000:]
    assert state(a_warehouse) == before


def test_other_organizations_never_write_a_warehouse_through_dagster(a_warehouse, org_a, org_b):
    before = state(a_warehouse)
    keyless = settings_for(REPO_ROOT, duckdb_path=str(a_warehouse), sandbox_calls=200)
    b_key = settings_for(REPO_ROOT, duckdb_path=str(a_warehouse), api_key=KEY,
                         base_url=org_b.base_url)  # fmt: skip
    dbt_only = [
        key
        for key in build_definitions(b_key).resolve_asset_graph().get_all_asset_keys()
        if key.path[0] == "analytics"
    ]
    attempts = {
        "no key": (keyless, PIPELINE_JOB, {}),
        "no key, the weekly reconcile job": (keyless, RECONCILE_JOB, {}),
        "B's key": (b_key, PIPELINE_JOB, {}),
        "B's key, dbt and the report alone": (b_key, PIPELINE_JOB, {"asset_selection": dbt_only}),
    }
    for name, (settings, job, kwargs) in attempts.items():
        result = run_job(settings, job, **kwargs)
        assert not result.success, name
        assert not [e for e in result.all_events if e.event_type_value == "STEP_START"], name
        failure = next(
            e.event_specific_data.error for e in result.all_events if e.is_failure
        ).to_string()
        assert "WrongOrganizationError" in failure and ORG_A in failure, (name, failure)
        assert state(a_warehouse) == before, name
    assert activity_requests(org_b) == 0, "B was synced from"

    no_key = settings_for(REPO_ROOT, duckdb_path=str(a_warehouse), base_url=org_a.base_url)
    with pytest.raises(ValueError, match="CLOSE_API_BASE_URL is set .* set CLOSE_API_KEY"):
        build_definitions(no_key)
    assert state(a_warehouse) == before


def test_with_its_own_key_the_warehouse_runs_and_equals_the_truth(a_warehouse, org_a):
    # after the refusals above (the module's tests run in order): A's key still works
    org_a.store.add_calls(5)
    org_a.store.advance(60)
    done = close_calls(
        clean_env(a_warehouse, CLOSE_API_KEY=KEY, CLOSE_API_BASE_URL=org_a.base_url), "run"
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"Syncing Close organization Alpha ({ORG_A})" in done.stdout
    con = warehouse.connect(str(a_warehouse))
    try:
        assert_warehouse_matches_truth(con, org_a.store)
        users = {r[0] for r in con.execute("SELECT id FROM close.users").fetchall()}
        assert users == {u["id"] for u in org_a.store.users}
        assert con.execute("SELECT organization_id FROM close.warehouse_identity").fetchall() == [
            (ORG_A,)
        ]
    finally:
        con.close()


# --- the sandbox, then live -------------------------------------------------------------------------


def identity_of(db_path: Path) -> list[tuple]:
    return query(db_path, "SELECT organization_id, is_sandbox FROM close.warehouse_identity")


def test_trying_the_sandbox_then_going_live_keeps_them_apart(org_a, tmp_path):
    keyless = settings_for(tmp_path, sandbox_calls=200)
    keyed = settings_for(tmp_path, api_key=KEY, base_url=org_a.base_url)
    assert keyless.duckdb_path == tmp_path / "data" / "sandbox.duckdb"
    assert keyed.duckdb_path == tmp_path / "data" / "close_calls.duckdb"
    ingestion = {"asset_selection": [*INGESTION_KEYS]}

    assert run_job(keyless, **ingestion).success
    assert run_job(keyed, **ingestion).success
    assert identity_of(keyless.duckdb_path) == [(EMBEDDED, True)]
    assert identity_of(keyed.duckdb_path) == [(ORG_A, False)]
    assert query(keyed.duckdb_path, "SELECT DISTINCT organization_id FROM close.calls") == [
        (ORG_A,)
    ]
    assert query(keyed.duckdb_path, "SELECT count(*) FROM close.calls") == [
        (len(org_a.store.truth()),)
    ]

    # A key pointed at the sandbox's warehouse is refused; start-over moves it aside, and the
    # next run starts a new warehouse there, of the key's organization only.
    on_sandbox_file = settings_for(tmp_path, duckdb_path=str(keyless.duckdb_path), api_key=KEY,
                                   base_url=org_a.base_url)  # fmt: skip
    assert not run_job(on_sandbox_file, **ingestion).success
    assert identity_of(keyless.duckdb_path) == [(EMBEDDED, True)]
    sandbox_calls = query(keyless.duckdb_path, "SELECT count(*) FROM close.calls")

    done = close_calls(clean_env(keyless.duckdb_path), "start-over")
    assert done.returncode == 0, done.stdout + done.stderr
    backups = sorted(keyless.duckdb_path.parent.glob("sandbox.*.bak.duckdb"))
    assert len(backups) == 1 and not keyless.duckdb_path.exists()
    assert str(backups[0]) in done.stdout and "mv " in done.stdout
    assert query(backups[0], "SELECT count(*) FROM close.calls") == sandbox_calls

    assert run_job(on_sandbox_file, **ingestion).success
    assert identity_of(keyless.duckdb_path) == [(ORG_A, False)]
    assert query(keyless.duckdb_path, "SELECT DISTINCT organization_id FROM close.calls") == [
        (ORG_A,)
    ]


def test_an_older_warehouse_is_adopted_only_by_the_organization_of_its_calls(
    make_sandbox, tmp_path
):
    sandbox = make_sandbox(calls=60, seed=63, organization_id="orga_old")
    other = make_sandbox(calls=60, seed=64, organization_id="orga_new")
    db_path = tmp_path / "old.duckdb"
    assert run_job(
        settings_for(tmp_path, duckdb_path=str(db_path), api_key=KEY, base_url=sandbox.base_url),
        asset_selection=[*INGESTION_KEYS],
    ).success
    con = warehouse.connect(str(db_path))
    con.execute("DROP TABLE close.warehouse_identity")  # as an earlier release left it
    con.close()

    assert not run_job(
        settings_for(tmp_path, duckdb_path=str(db_path), api_key=KEY, base_url=other.base_url),
        asset_selection=[CALLS_KEY, UTTERANCES_KEY],
    ).success
    assert query(db_path, "SELECT DISTINCT organization_id FROM close.calls") == [("orga_old",)]
    assert run_job(
        settings_for(tmp_path, duckdb_path=str(db_path), api_key=KEY, base_url=sandbox.base_url),
        asset_selection=[CALLS_KEY, UTTERANCES_KEY],
    ).success
    assert identity_of(db_path) == [("orga_old", False)]


# --- a reconcile facing a mass delete -----------------------------------------------------------------


def test_a_reconcile_that_would_delete_most_calls_stops_until_told(make_sandbox, tmp_path):
    sandbox = make_sandbox(calls=200, seed=65)
    settings = settings_for(
        tmp_path, duckdb_path=str(tmp_path / "w.duckdb"), api_key=KEY, base_url=sandbox.base_url
    )
    ingestion = {"asset_selection": [*INGESTION_KEYS]}
    assert run_job(settings, **ingestion).success
    gone = list(sandbox.store.truth())[:60]  # 30% of the live calls
    for call_id in gone:
        sandbox.store.delete_call(call_id)
    deleted = "SELECT count(*) FROM close.calls WHERE _deleted_at IS NOT NULL"

    stopped = run_job(settings, RECONCILE_JOB, **ingestion)
    assert not stopped.success
    error = next(
        e.event_specific_data.error for e in stopped.all_events if e.is_failure
    ).to_string()
    assert "MassDeleteError" in error and "60 of the 200 live calls" in error, error
    assert query(settings.duckdb_path, deleted) == [(0,)]

    allowed = {"ops": {"close_calls": {"config": {"reconcile": True, "allow_mass_delete": True}}}}
    assert run_job(settings, RECONCILE_JOB, run_config=allowed, **ingestion).success
    assert query(settings.duckdb_path, deleted) == [(60,)]


def test_the_share_a_reconcile_may_delete_is_a_setting(make_sandbox, tmp_path):
    assert CloseCallsComponent().max_reconcile_delete_share == 0.2
    with pytest.raises(ValueError, match="between 0 and 1"):
        config.parse_delete_share("20")
    sandbox = make_sandbox(calls=100, seed=66)
    settings = settings_for(
        tmp_path,
        duckdb_path=str(tmp_path / "w.duckdb"),
        api_key=KEY,
        base_url=sandbox.base_url,
        max_reconcile_delete_share=0.5,
    )
    ingestion = {"asset_selection": [*INGESTION_KEYS]}
    assert run_job(settings, **ingestion).success
    for call_id in list(sandbox.store.truth())[:30]:
        sandbox.store.delete_call(call_id)
    assert run_job(settings, RECONCILE_JOB, **ingestion).success  # 30% is within 50%
    assert query(
        settings.duckdb_path, "SELECT count(*) FROM close.calls WHERE _deleted_at IS NOT NULL"
    ) == [(30,)]


# --- which organization a key is for -------------------------------------------------------------


def test_the_organization_of_a_key_is_chosen_deterministically_or_refused():
    one = {"organizations": [{"id": "orga_1", "name": "One"}]}
    assert organization_from_me(one, is_sandbox=False) == Organization("orga_1", "One", False)
    two = {"organizations": [{"id": "orga_1", "name": "One"}, {"id": "orga_2", "name": "Two"}]}
    assert organization_from_me({**two, "organization_id": "orga_2"}, is_sandbox=False).name == (
        "Two"
    )
    memberships = {**two, "memberships": [{"organization_id": "orga_1", "user_id": "u"}]}
    assert organization_from_me(memberships, is_sandbox=False).id == "orga_1"
    with pytest.raises(OrganizationUnknownError, match="One \\(orga_1\\), Two \\(orga_2\\)"):
        organization_from_me(two, is_sandbox=False)
    with pytest.raises(OrganizationUnknownError):
        organization_from_me({"organizations": []}, is_sandbox=False)
    sandbox = Organization(EMBEDDED, "Sandbox", True)
    assert not sandbox.same_as(Organization(EMBEDDED, "Sandbox", False))
    assert sandbox.describe() == f"the embedded sandbox (organization {EMBEDDED})"


# --- start-over never moves a warehouse a run is writing -----------------------------------------

LOCK_HOLDER = (
    "import sys; from close_calls_pipeline.core import locks; "
    "lock = locks.acquire_run_lock(sys.argv[1], owner='a run'); print('held', flush=True); "
    "sys.stdin.readline()"
)


def test_start_over_refuses_while_a_run_holds_the_warehouse(tmp_path):
    db_path = tmp_path / "close_calls.duckdb"
    warehouse.connect(str(db_path)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.RunInProgressError, match="a run"):
            move_warehouse_aside(db_path)
        assert db_path.exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    moves = move_warehouse_aside(db_path)
    assert [source for source, _ in moves] == [db_path] and not db_path.exists()
    assert moves[0][1].name.endswith(".bak.duckdb") and moves[0][1].exists()
