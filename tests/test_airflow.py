"""The Airflow 3 DAG (`close_calls_pipeline.airflow`), run by Airflow's own CLI:

* the shipped DAG folder imports with no errors, with the conventions (one run at a time,
  retries with backoff on the sync, asset outlets);
* `airflow dags test` against a keyed sandbox builds the warehouse equal to the sandbox's truth
  and the marts its headline figures, the dbt log names every model and test, and the key is in
  no output, XCom, rendered field, log or file;
* an error-severity dbt test failure fails the dbt task (warnings are logged);
* a run while another run holds the warehouse's run lock fails at once, naming it;
* a warehouse built from one Close organization is never written by a run against another (the
  sync and the reference tables fail before writing), nor by a base URL without a key;
* with no key, the tasks start the embedded sandbox themselves; the key can also come from an
  Airflow connection.

Airflow runs in subprocesses, each with its own AIRFLOW_HOME (a SQLite metadata database migrated
once per session by `airflow db migrate`): importing Airflow sets up a home folder and global
configuration, which the test process keeps out of.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import duckdb
import pytest
from helpers.truth import assert_warehouse_matches_truth, mart_counts, truth_counts

from close_calls_pipeline.airflow.settings import check_overrides, task_settings
from close_calls_pipeline.core import config, locks, warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.personal_data import HASH_KEY_ENV, PersonalDataError
from close_calls_pipeline.core.sync import refresh_reference_tables, sync_calls
from close_calls_pipeline.sandbox import SandboxStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # a whole run is two Airflow CLI processes, each with dbt
    pytest.mark.skipif(
        find_spec("airflow") is None,
        reason="Airflow is not installed: pip install -e '.[dev]' (or '.[airflow]')",
    ),
]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SHIPPED_DAG = Path(config.__file__).parents[1] / "airflow" / "dags" / "close_calls.py"
TASKS = ["sync_calls", "reference_tables", "dbt_build", "call_report", "publish_readonly_copy"]


def _base_environment() -> dict[str, str]:
    """This process's environment without any Close or Airflow setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLOSE_", "AIRFLOW"))}


@dataclass
class AirflowHome:
    """A throw-away AIRFLOW_HOME with a migrated metadata database and the shipped DAG file."""

    path: Path

    @property
    def dags(self) -> Path:
        return self.path / "dags"

    @property
    def database(self) -> Path:
        return self.path / "airflow.db"

    def environment(self, **settings: str) -> dict[str, str]:
        return {
            **_base_environment(),
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **settings,
        }

    def run(self, *args: str, timeout: float = 600, **settings: str) -> subprocess.CompletedProcess:
        """`airflow ARGS...` with these settings (environment variables) added."""
        return subprocess.run(
            [AIRFLOW, *args],
            env=self.environment(**settings),
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def rows(self, sql: str) -> list[tuple]:
        con = sqlite3.connect(self.database)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def _latest_run(self, dag_id: str) -> str:
        return (
            f"dag_id = '{dag_id}' AND run_id = (SELECT run_id FROM dag_run "
            f"WHERE dag_id = '{dag_id}' ORDER BY id DESC LIMIT 1)"
        )

    def task_states(self, dag_id: str = "close_calls") -> dict[str, tuple[str, int]]:
        """task id -> (state, try number) of the DAG's latest run."""
        return {
            task_id: (state, tries)
            for task_id, state, tries in self.rows(
                "SELECT task_id, state, try_number FROM task_instance "
                f"WHERE {self._latest_run(dag_id)}"
            )
        }

    def xcoms(self, dag_id: str = "close_calls") -> dict[str, object]:
        """task id -> its return value in the DAG's latest run, as stored."""
        out = {}
        for task_id, value in self.rows(
            "SELECT task_id, value FROM xcom "
            f"WHERE key = 'return_value' AND {self._latest_run(dag_id)}"
        ):
            decoded = json.loads(value)
            out[task_id] = json.loads(decoded) if isinstance(decoded, str) else decoded
        return out


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> Path:
    """An Airflow metadata database migrated once (`airflow db migrate`), copied per test."""
    home = AirflowHome(tmp_path_factory.mktemp("airflow_template"))
    home.dags.mkdir()
    result = home.run("db", "migrate", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home.database


@pytest.fixture
def airflow_home(tmp_path, migrated_database) -> AirflowHome:
    home = AirflowHome(tmp_path / "airflow_home")
    home.dags.mkdir(parents=True)
    shutil.copy(migrated_database, home.database)
    shutil.copy(SHIPPED_DAG, home.dags / SHIPPED_DAG.name)  # as docs/airflow.md says to
    return home


def _output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def _tail(result: subprocess.CompletedProcess) -> str:
    return _output(result)[-6000:]


# --- the DAG folder ------------------------------------------------------------------------------

_DAGBAG_FACTS = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    dag = bag.dags.get("close_calls")
    facts = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
             "dag_ids": sorted(bag.dag_ids)}
    if dag is not None:
        facts.update(
            max_active_runs=dag.max_active_runs,
            catchup=dag.catchup,
            params=sorted(dag.params),
            tasks={t.task_id: {"retries": t.retries,
                               "backoff": float(t.retry_exponential_backoff or 0),
                               "outlets": [o.name for o in t.outlets],
                               "upstream": sorted(t.upstream_task_ids)}
                   for t in dag.tasks})
    print("FACTS " + json.dumps(facts))
    """
)


def test_the_dag_folder_imports_with_no_errors(airflow_home):
    result = subprocess.run(
        [sys.executable, "-c", _DAGBAG_FACTS, str(airflow_home.dags)],
        env=airflow_home.environment(CLOSE_API_KEY="never-read-at-parse-time"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, _tail(result)
    facts = json.loads(result.stdout.split("FACTS ", 1)[1])
    assert facts["import_errors"] == {}
    assert facts["dag_ids"] == ["close_calls"]
    assert facts["max_active_runs"] == 1
    assert not facts["catchup"]
    assert facts["params"] == ["allow_mass_delete", "backfill_start", "reconcile"]
    tasks = facts["tasks"]
    assert sorted(tasks) == sorted(TASKS)
    for upstream, downstream in zip(TASKS, TASKS[1:]):  # one writer at a time: a chain
        assert tasks[downstream]["upstream"] == [upstream]
    assert tasks["sync_calls"]["retries"] >= 1 and tasks["sync_calls"]["backoff"] > 1
    assert tasks["sync_calls"]["outlets"] == ["close_calls.warehouse"]
    assert tasks["reference_tables"]["outlets"] == ["close_calls.warehouse"]
    assert tasks["dbt_build"]["outlets"] == ["close_calls.marts"]
    assert tasks["publish_readonly_copy"]["outlets"] == ["close_calls.readonly_copy"]


# --- a whole run ---------------------------------------------------------------------------------


def _files_containing(needle: str, *folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and needle.encode() in path.read_bytes():
                found.append(str(path))
    return found


def test_dags_test_builds_the_warehouse_and_marts_and_keeps_the_key_out(
    make_sandbox, airflow_home, tmp_path
):
    key = f"airflow-test-key-{uuid.uuid4().hex}"
    sandbox = make_sandbox(calls=300, api_key=key)
    db_path = tmp_path / "warehouse" / "close_calls.duckdb"
    result = airflow_home.run(
        "dags",
        "test",
        "close_calls",
        CLOSE_API_KEY=key,
        CLOSE_API_BASE_URL=sandbox.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    assert result.returncode == 0, _tail(result)
    assert airflow_home.task_states() == {task: ("success", 1) for task in TASKS}

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        assert_warehouse_matches_truth(con, sandbox.store)
        (users,) = con.execute("SELECT count(*) FROM close.users").fetchone()
    finally:
        con.close()
    assert users == len(sandbox.store.users)
    assert mart_counts(db_path) == truth_counts(sandbox.store)

    xcoms = airflow_home.xcoms()
    truth = sandbox.store.truth()
    assert xcoms["sync_calls"]["source"] == "close"
    assert xcoms["sync_calls"]["mode"] == "backfill"
    assert xcoms["sync_calls"]["calls_inserted"] == len(truth)
    assert xcoms["publish_readonly_copy"]["live_calls"] == len(truth)
    assert xcoms["publish_readonly_copy"]["method"] == "whole file"  # no copy before it
    assert Path(xcoms["publish_readonly_copy"]["path"]) == config.readonly_copy_path(db_path)
    assert Path(xcoms["call_report"]["path"]).is_file()
    assert xcoms["call_report"]["figures"]["calls"] > 0

    # A second run, asked to reconcile (the DAG's param), finds nothing to change.
    again = airflow_home.run(
        "dags",
        "test",
        "close_calls",
        "--conf",
        json.dumps({"reconcile": True}),
        CLOSE_API_KEY=key,
        CLOSE_API_BASE_URL=sandbox.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    assert airflow_home.task_states() == {task: ("success", 1) for task in TASKS}, _tail(again)
    reconciled = airflow_home.xcoms()["sync_calls"]
    assert (reconciled["mode"], reconciled["drift_calls"]) == ("reconcile", 0)
    assert reconciled["calls_inserted"] == reconciled["calls_deleted"] == 0
    assert mart_counts(db_path) == truth_counts(sandbox.store)

    # Close changes: an incremental build, dbt running the tables, every data test after it.
    sandbox.store.mutate_random(random.Random(5), new=3, updated=5, deleted=2)
    sandbox.store.advance(600)
    third = airflow_home.run(
        "dags",
        "test",
        "close_calls",
        CLOSE_API_KEY=key,
        CLOSE_API_BASE_URL=sandbox.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    assert airflow_home.task_states() == {task: ("success", 1) for task in TASKS}, _tail(third)
    built = airflow_home.xcoms()["dbt_build"]
    assert built["mode"] == "incremental", built
    assert 0 < built["models"] < len(list((config.DBT_PROJECT_DIR / "models").rglob("*.sql")))
    assert built["tests"] >= 90, built
    assert mart_counts(db_path) == truth_counts(sandbox.store)
    assert "test.close_calls.assert_fct_calls_cost_usd_exact: pass" in _output(third)
    # the copy the first run published was kept by the second, and brought up to date
    assert airflow_home.xcoms()["publish_readonly_copy"]["method"] == "changed rows"

    # The dbt task's log names every model and every singular test with its status.
    output = _output(result)
    for model in (config.DBT_PROJECT_DIR / "models").rglob("*.sql"):
        assert f"model.close_calls.{model.stem}: success" in output, model.stem
    for test in (config.DBT_PROJECT_DIR / "tests").glob("*.sql"):
        assert f"test.close_calls.{test.stem}: pass" in output, test.stem

    # The key: in no output, XCom, rendered template, serialized DAG, log or file.
    assert key not in output + _output(again)
    assert "***" not in output + _output(again)  # nothing even tried to log it (masked)
    assert not [row for row in airflow_home.rows("SELECT value FROM xcom") if key in str(row)]
    assert not [
        row
        for row in airflow_home.rows("SELECT rendered_fields FROM rendered_task_instance_fields")
        if key in str(row)
    ]
    assert _files_containing(key, airflow_home.path, db_path.parent) == []


# --- dbt tests fail the dbt task -----------------------------------------------------------------


def _sync_into(db_path: Path, sandbox) -> None:
    """A warehouse synced from the sandbox by the core itself (no orchestrator)."""
    con = warehouse.connect(str(db_path))
    try:
        with CloseClient(sandbox.api_key, sandbox.base_url) as client:
            sync_calls(client, con)
            refresh_reference_tables(client, con)
    finally:
        con.close()


def test_an_error_severity_dbt_test_failure_fails_the_dbt_task(
    make_sandbox, airflow_home, tmp_path
):
    sandbox = make_sandbox(calls=200)
    db_path = tmp_path / "close_calls.duckdb"
    _sync_into(db_path, sandbox)
    con = duckdb.connect(str(db_path))
    try:
        # a duplicated call (error: unique) and a status Close never sent (warn: accepted_values)
        con.execute(
            "INSERT INTO close.calls SELECT * FROM close.calls "
            "WHERE id = (SELECT min(id) FROM close.calls WHERE _deleted_at IS NULL)"
        )
        con.execute(
            "UPDATE close.calls SET status = 'teleported' "
            "WHERE id = (SELECT max(id) FROM close.calls WHERE _deleted_at IS NULL)"
        )
    finally:
        con.close()

    result = airflow_home.run(
        "tasks", "test", "close_calls", "dbt_build", CLOSE_CALLS_DUCKDB=str(db_path)
    )
    output = _output(result)
    # `airflow tasks test` exits 0 whatever the task did, and keeps no task instance: the
    # execution API's log of the state it set says.
    assert "new_state=failed" in output and "new_state=success" not in output, _tail(result)
    assert "DbtBuildFailed" in output
    failed_line = next(
        line for line in output.splitlines() if "dbt build failed" in line and "exit" in line
    )
    assert "test.close_calls.unique_stg_close__calls_call_id" in failed_line
    assert "accepted_values_stg_close__calls_status" not in failed_line  # a warning, not a failure
    warned = [
        line for line in output.splitlines() if "accepted_values_stg_close__calls_status" in line
    ]
    assert any("warning" in line and ": warn" in line for line in warned), warned
    assert "model.close_calls.stg_close__calls: success" in output


# --- the run lock --------------------------------------------------------------------------------


def test_a_run_while_another_holds_the_lock_fails_at_once_naming_it(
    make_sandbox, airflow_home, tmp_path
):
    sandbox = make_sandbox(calls=50)
    db_path = tmp_path / "close_calls.duckdb"
    with locks.acquire_run_lock(db_path, owner="Dagster run held-by-the-test"):
        result = airflow_home.run(
            "dags",
            "test",
            "close_calls",
            CLOSE_API_KEY=sandbox.api_key,
            CLOSE_API_BASE_URL=sandbox.base_url,
            CLOSE_CALLS_DUCKDB=str(db_path),
        )
    output = _output(result)
    states = airflow_home.task_states()
    # The sync, which retries other errors, failed on its first try and was not retried.
    assert states["sync_calls"] == ("failed", 1), _tail(result)
    assert {states[task][0] for task in TASKS[1:]} == {"upstream_failed"}
    assert "Dagster run held-by-the-test" in output
    assert f"PID {os.getpid()} " in output
    assert sandbox.stats()["requests"] == 0, "the run called Close although it could not write"
    assert not db_path.exists()


def test_a_key_close_refuses_fails_the_sync_at_once_and_is_not_shown(
    make_sandbox, airflow_home, tmp_path
):
    sandbox = make_sandbox(calls=20)
    wrong_key = f"not-the-key-{uuid.uuid4().hex}"
    result = airflow_home.run(
        "dags",
        "test",
        "close_calls",
        CLOSE_API_KEY=wrong_key,
        CLOSE_API_BASE_URL=sandbox.base_url,
        CLOSE_CALLS_DUCKDB=str(tmp_path / "close_calls.duckdb"),
    )
    output = _output(result)
    # Retrying would not help: failed on the first try, not up for retry.
    assert airflow_home.task_states()["sync_calls"] == ("failed", 1), _tail(result)
    assert "Close refused the API key" in output
    assert wrong_key not in output
    assert "***" not in output  # not even in the error (Airflow would have masked it)


# --- no key: the embedded sandbox -----------------------------------------------------------------


def test_without_a_key_the_tasks_start_the_embedded_sandbox(airflow_home, tmp_path):
    db_path = tmp_path / "close_calls.duckdb"
    result = airflow_home.run(
        "tasks", "test", "close_calls", "reference_tables", CLOSE_CALLS_DUCKDB=str(db_path)
    )
    assert "new_state=success" in _output(result), _tail(result)
    assert "embedded sandbox Close API" in _output(result)
    store = SandboxStore(calls=config.SANDBOX_CALLS, seed=config.SANDBOX_SEED)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        users = con.execute("SELECT id FROM close.users ORDER BY id").fetchall()
    finally:
        con.close()
    assert [u for (u,) in users] == sorted(u["id"] for u in store.users)


# --- settings and schedule, without Airflow --------------------------------------------------------


def test_the_sync_task_applies_the_personal_data_policy_and_the_file_mode(tmp_path, monkeypatch):
    from close_calls_pipeline.airflow import tasks  # croniter: the airflow extra

    monkeypatch.setenv(HASH_KEY_ENV, "a-test-hash-key")
    policy = {"phone_numbers": "hash", "notes": "drop"}
    check_overrides({"personal_data": policy, "file_mode": "group"})  # what build_dag checks
    settings = task_settings(
        {"AIRFLOW_HOME": str(tmp_path)}, personal_data=policy, file_mode="group", sandbox_calls=60
    )
    with tasks.run_lock(settings, "test"):
        tasks.sync(settings, reconcile=False, backfill_start=None)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        phones, notes = con.execute(
            "SELECT list(remote_phone) FILTER (WHERE remote_phone IS NOT NULL), count(note) "
            "FROM close.calls"
        ).fetchone()
    finally:
        con.close()
    assert phones and all(re.fullmatch("[0-9a-f]{64}", phone) for phone in phones)
    assert notes == 0
    assert stat.S_IMODE(settings.duckdb_path.stat().st_mode) == 0o640
    monkeypatch.delenv(HASH_KEY_ENV)
    with pytest.raises(PersonalDataError, match=HASH_KEY_ENV):
        tasks.sync(settings, reconcile=False, backfill_start=None)


def test_task_settings_are_the_models_resolved_against_airflow_home(tmp_path):
    environ = {
        "AIRFLOW_HOME": str(tmp_path),
        "CLOSE_CALLS_DUCKDB": "warehouse/calls.duckdb",
        "CLOSE_CALLS_LOCK_WAIT_SECONDS": "7",
        "CLOSE_API_KEY": "  ",
    }
    settings = task_settings(environ)
    assert settings.duckdb_path == tmp_path / "warehouse" / "calls.duckdb"
    assert settings.lock_wait_seconds == 7.0
    assert settings.api_key is None  # blank: the sandbox
    other = tmp_path / "other.duckdb"
    assert task_settings(environ, duckdb_path=str(other)).duckdb_path == other

    # No path: the live file with a key, the sandbox's without (never the same warehouse).
    home = {"AIRFLOW_HOME": str(tmp_path)}
    assert task_settings(home).duckdb_path == tmp_path / "data" / "sandbox.duckdb"
    keyed = task_settings({**home, "CLOSE_API_KEY": "key-of-the-repr-test"})
    assert keyed.duckdb_path == tmp_path / config.DEFAULT_DUCKDB_RELATIVE_PATH
    assert "key-of-the-repr-test" not in repr(keyed)

    with pytest.raises(ValueError, match="CLOSE_API_KEY"):
        check_overrides({"api_key": "secret"})
    with pytest.raises(ValueError, match="schedule"):
        check_overrides({"cron_schedule": "@daily"})
    with pytest.raises(TypeError, match="duckdb_pth"):
        check_overrides({"duckdb_pth": "x"})
    with pytest.raises(ValueError, match="workers"):
        check_overrides({"workers": 0})


def test_the_weekly_reconcile_is_the_scheduled_run_at_its_cron():
    from close_calls_pipeline.airflow.tasks import reconcile_due  # needs the airflow extra

    weekly = config.DEFAULT_RECONCILE_CRON_SCHEDULE  # Sunday 03:00 UTC
    assert reconcile_due(weekly, datetime(2026, 12, 6, 3, 0, tzinfo=UTC))
    assert not reconcile_due(weekly, datetime(2026, 12, 6, 4, 0, tzinfo=UTC))
    assert not reconcile_due(weekly, datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    assert not reconcile_due(None, datetime(2026, 12, 6, 3, 0, tzinfo=UTC))
    assert not reconcile_due(weekly, None)


def test_the_key_can_come_from_an_airflow_connection(make_sandbox, airflow_home, tmp_path):
    key = f"airflow-connection-key-{uuid.uuid4().hex}"
    sandbox = make_sandbox(calls=20, api_key=key)
    (airflow_home.dags / "close_calls_connection.py").write_text(
        "from close_calls_pipeline.airflow import build_dag\n\n"
        'dag = build_dag(dag_id="close_calls_connection", close_conn_id="close_api")\n'
    )
    db_path = tmp_path / "close_calls.duckdb"
    connection = json.dumps({"conn_type": "generic", "password": key})
    result = airflow_home.run(
        "tasks",
        "test",
        "close_calls_connection",
        "reference_tables",
        AIRFLOW_CONN_CLOSE_API=connection,
        CLOSE_API_BASE_URL=sandbox.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    output = _output(result)
    assert "new_state=success" in output, _tail(result)
    assert "embedded sandbox" not in output
    assert key not in output
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        (users,) = con.execute("SELECT count(*) FROM close.users").fetchone()
    finally:
        con.close()
    assert users == len(sandbox.store.users)


# --- one warehouse, one Close organization -------------------------------------------------------


def _holdings(db_path: Path) -> dict[str, object]:
    """Every close.* table's row count, the sync state and the recorded organization."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        tables = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'close' "
                "AND table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        held: dict[str, object] = {
            name: con.execute(f"SELECT count(*) FROM close.{name}").fetchone()[0] for name in tables
        }
        held["sync_state"] = con.execute("SELECT * FROM close.sync_state ORDER BY 1").fetchall()
        held["identity"] = con.execute(
            "SELECT organization_id, is_sandbox FROM close.warehouse_identity"
        ).fetchall()
        return held
    finally:
        con.close()


def test_a_run_against_another_organization_fails_before_writing(
    make_sandbox, airflow_home, tmp_path
):
    first = make_sandbox(calls=60, organization_id="orga_first", organization_name="First")
    second = make_sandbox(
        calls=40, seed=2, organization_id="orga_second", organization_name="Second"
    )
    db_path = tmp_path / "close_calls.duckdb"
    for task_id in ("sync_calls", "reference_tables"):
        built = airflow_home.run(
            "tasks",
            "test",
            "close_calls",
            task_id,
            CLOSE_API_KEY=first.api_key,
            CLOSE_API_BASE_URL=first.base_url,
            CLOSE_CALLS_DUCKDB=str(db_path),
        )
        assert "new_state=success" in _output(built), _tail(built)
    before = _holdings(db_path)
    assert before["identity"] == [("orga_first", False)]
    assert before["calls"] == len(first.store.truth()) and before["users"] > 0

    # The whole DAG against the second organization: the sync fails on its first try (no
    # retry), naming both organizations, and nothing after it runs.
    result = airflow_home.run(
        "dags",
        "test",
        "close_calls",
        CLOSE_API_KEY=second.api_key,
        CLOSE_API_BASE_URL=second.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    output = _output(result)
    states = airflow_home.task_states()
    assert states["sync_calls"] == ("failed", 1), _tail(result)
    assert {states[task][0] for task in TASKS[1:]} == {"upstream_failed"}
    assert "WrongOrganizationError" in output
    assert "orga_first" in output and "orga_second" in output
    assert _holdings(db_path) == before
    assert not config.readonly_copy_path(db_path).exists()

    # The reference tables, run on their own, check too.
    reference = airflow_home.run(
        "tasks",
        "test",
        "close_calls",
        "reference_tables",
        CLOSE_API_KEY=second.api_key,
        CLOSE_API_BASE_URL=second.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    assert "new_state=failed" in _output(reference), _tail(reference)
    assert "WrongOrganizationError" in _output(reference)
    assert _holdings(db_path) == before

    # A base URL without a key is refused, not a quiet switch to the embedded sandbox.
    keyless = airflow_home.run(
        "tasks",
        "test",
        "close_calls",
        "sync_calls",
        CLOSE_API_BASE_URL=first.base_url,
        CLOSE_CALLS_DUCKDB=str(db_path),
    )
    assert "new_state=failed" in _output(keyless), _tail(keyless)
    assert "CLOSE_API_BASE_URL is set" in _output(keyless)
    assert "embedded sandbox Close API at" not in _output(keyless)
    assert _holdings(db_path) == before
    # The second organization's API was asked who it is, and nothing else.
    assert {endpoint for endpoint, _ in second.stats()["by_endpoint"]} == {"me"}
