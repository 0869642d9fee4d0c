"""Readers and runs side by side: real processes, real DuckDB files, real dbt, the sandbox Close API
over loopback HTTP.

* a notebook following the recipe of docs/notebooks.md holds the published copy open through a whole run;
  the run succeeds, and the notebook, reconnecting, sees the new run; another process querying
  the copy in a loop during the run never fails and never waits a second;
* a process holding the writer's file makes a run wait for the configured time, then fail
  naming its PID and the fix; if it lets go within the wait, the run proceeds and succeeds;
* `kill -9` of a run while dbt runs leaves no dbt process behind, and the re-run succeeds;
* a second run (`close-calls run`, or a Dagster run) while one is running is refused at once,
  naming the first (PID, since when), starting nothing.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from helpers.processes import HOLDER, gone, stop
from helpers.run_lock import run_lock_holder

from close_calls_pipeline.core import config, warehouse
from close_calls_pipeline.dagster_component.component import (
    CloseCallsComponent,
    build_definitions,
)
from close_calls_pipeline.dagster_component.keys import PIPELINE_JOB
from close_calls_pipeline.dagster_component.resources import CloseApiResource

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

CALLS = 300
CLOSE_CALLS = Path(sys.executable).parent / "close-calls"

# The notebook recipe (docs/notebooks.md), in a process of its own: connect to the copy
# read-only, query; later (a line on stdin) query the same connection again, then close it and
# connect again to see the newest run.
NOTEBOOK = textwrap.dedent(
    """
    import json, sys
    import duckdb

    COPY = sys.argv[1]

    def look(con):
        live, fct, runs, last = con.execute(
            "SELECT (SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL), "
            "(SELECT count(*) FROM analytics.fct_calls), "
            "(SELECT count(*) FROM close.sync_state), "
            "(SELECT max(finished_at)::VARCHAR FROM close.sync_state)").fetchone()
        return {"live_calls": live, "fct_calls": fct, "sync_runs": runs, "last_sync": last}

    con = duckdb.connect(COPY, read_only=True)
    print(json.dumps(look(con)), flush=True)
    sys.stdin.readline()                      # a whole run happens meanwhile
    print(json.dumps(look(con)), flush=True)  # same connection: still the state it opened
    con.close()
    con = duckdb.connect(COPY, read_only=True)
    print(json.dumps(look(con)), flush=True)
    """
)

# Connects to the copy, queries and disconnects in a loop until the stop file appears; reports
# every failure and the longest connect + query.
LOOP_READER = textwrap.dedent(
    """
    import json, os, sys, time
    import duckdb

    COPY, STOP = sys.argv[1], sys.argv[2]
    failures, inconsistent, seconds, runs_seen = [], 0, [], set()
    print("started", flush=True)
    while not os.path.exists(STOP):
        started = time.monotonic()
        try:
            con = duckdb.connect(COPY, read_only=True)
            live, fct, runs = con.execute(
                "SELECT (SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL), "
                "(SELECT count(*) FROM analytics.fct_calls), "
                "(SELECT count(*) FROM close.sync_state)").fetchone()
            con.close()
        except Exception as error:
            failures.append(repr(error))
        else:
            inconsistent += live != fct
            runs_seen.add(runs)
        seconds.append(time.monotonic() - started)
        time.sleep(0.02)
    seconds.sort()
    print(json.dumps({"queries": len(seconds), "failures": failures, "inconsistent": inconsistent,
                      "median_seconds": seconds[len(seconds) // 2],
                      "p99_seconds": seconds[int(len(seconds) * 0.99)],
                      "longest_seconds": seconds[-1], "sync_runs_seen": sorted(runs_seen)}),
          flush=True)
    """
)


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "warehouse" / "close_calls.duckdb"
    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(path))
    return path


@pytest.fixture
def sandbox_env(make_sandbox, monkeypatch):
    """A sandbox Close API, and the environment `close-calls run` reads to reach it."""
    sandbox = make_sandbox(calls=CALLS, seed=21)
    monkeypatch.setenv("CLOSE_API_KEY", sandbox.api_key)
    monkeypatch.setenv("CLOSE_API_BASE_URL", sandbox.base_url)
    return sandbox


def run(**kwargs) -> tuple[int, str]:
    from close_calls_pipeline.cli.run import run_pipeline

    out = kwargs.pop("out", None) or io.StringIO()
    code = run_pipeline(out=out, **kwargs)
    return code, out.getvalue()


def python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# --- a notebook on the published copy, through a whole run -------------------------------------


def test_notebook_on_the_published_copy_through_a_run(sandbox_env, db_path, tmp_path):
    code, text = run()
    assert code == 0, text
    copy = config.readonly_copy_path(db_path)
    assert (
        f"Read-only copy for notebooks: {copy}" in text and "published the read-only copy" in text
    )

    notebook = python(NOTEBOOK, str(copy))
    stop_file = tmp_path / "stop-reading"
    reader = python(LOOP_READER, str(copy), str(stop_file))
    try:
        before = json.loads(notebook.stdout.readline())
        assert before["sync_runs"] == 1 and before["live_calls"] == before["fct_calls"] > 0
        assert reader.stdout.readline().strip() == "started"

        sandbox_env.store.mutate_random(random.Random(5), new=7, updated=5, deleted=2)
        sandbox_env.store.advance(60)
        code, text = run()  # the notebook holds its connection all along
        assert code == 0, text

        stop_file.touch()
        loop = json.loads(reader.communicate(timeout=60)[0])
        notebook.stdin.write("\n")
        notebook.stdin.flush()
        same_connection = json.loads(notebook.stdout.readline())
        reconnected = json.loads(notebook.stdout.readline())
    finally:
        stop(notebook)
        stop(reader)

    assert same_connection == before  # a consistent snapshot, not a half-written one
    assert reconnected["sync_runs"] == 2 and reconnected["last_sync"] > before["last_sync"]
    assert reconnected["live_calls"] == reconnected["fct_calls"] == len(sandbox_env.store.truth())
    assert reconnected["live_calls"] != before["live_calls"]

    print(
        f"\nreader loop during a run: {loop['queries']} connect+query+close, median "
        f"{loop['median_seconds'] * 1000:.0f} ms, p99 {loop['p99_seconds'] * 1000:.0f} ms, "
        f"longest {loop['longest_seconds'] * 1000:.0f} ms; sync runs seen {loop['sync_runs_seen']}"
    )
    assert loop["failures"] == [] and loop["inconsistent"] == 0
    assert loop["queries"] > 20
    assert loop["longest_seconds"] < 1.0
    assert loop["sync_runs_seen"][0] == 1


# --- a process holding the writer's file ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_process_holding_the_warehouse_fails_the_run_after_the_wait(sandbox_env, db_path, mode):
    warehouse.connect(str(db_path)).close()
    holder = python(HOLDER, str(db_path), mode)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        code, text = run(lock_wait_seconds=2)
        elapsed = time.monotonic() - started
    finally:
        stop(holder)
    assert code == 1, text
    assert "The pipeline FAILED" in text
    assert "waiting up to 2.0 s more" in text and f"PID {holder.pid}" in text
    # when the run starts, before any step: the organization check reads the warehouse first
    # (one line, printed once, without the error's class path)
    (failure,) = [line for line in text.splitlines() if "close that process" in line.lower()]
    assert f"held by PID {holder.pid} (" in failure and "Error:" not in failure
    assert f"close that process's connection to {db_path}".lower() in failure.lower()
    assert f"or open {config.readonly_copy_path(db_path)} instead" in failure
    assert "Conflicting lock" not in text  # no raw DuckDB error
    assert elapsed < 60  # one 2-second wait for the whole run, not one per step
    assert not config.readonly_copy_path(db_path).exists()  # nothing published


def test_the_run_proceeds_when_the_holder_lets_go_within_the_wait(sandbox_env, db_path):
    warehouse.connect(str(db_path)).close()
    holder = python(HOLDER, str(db_path), "ro")

    class Output(io.StringIO):
        """Lets the holder go as soon as the run says it is waiting for it."""

        released = False

        def write(self, text: str) -> int:
            if "waiting up to" in text and not self.released:
                self.released = True
                holder.stdin.write("\n")
                holder.stdin.flush()
            return super().write(text)

    try:
        assert holder.stdout.readline().strip() == "held"
        out = Output()
        code, text = run(lock_wait_seconds=60, out=out)
        assert holder.stdout.readline().strip() == "released"
    finally:
        stop(holder)
    assert out.released
    assert code == 0, text
    assert "got the warehouse" in text
    assert config.readonly_copy_path(db_path).exists()


# --- kill -9 while dbt runs ---------------------------------------------------------------------------


def _dbt_holding(run_pid: int, db_path: Path) -> int | None:
    """The PID of the run's dbt child once it has the warehouse file open."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != run_pid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(arg.endswith(b"/dbt") for arg in argv) or b"build" not in argv:
                continue
            if any(os.readlink(fd) == str(db_path) for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_during_dbt_leaves_no_dbt_behind_and_the_rerun_succeeds(sandbox_env, db_path):
    first = subprocess.Popen(
        [str(CLOSE_CALLS), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    dbt = None
    try:
        deadline = time.monotonic() + 240
        while (dbt := _dbt_holding(first.pid, db_path)) is None:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "dbt never opened the warehouse"
            time.sleep(0.05)
        # Left alone, an orphaned dbt dies at its next log line (its stdout pipe is gone), but
        # not while one long statement runs. Stopped, it writes nothing either: only the kernel
        # (SIGKILL on its parent's death, set by close-calls-dbt) can end it.
        os.kill(dbt, signal.SIGSTOP)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
        while not gone(dbt):
            assert time.monotonic() - killed_at < 5, f"dbt (PID {dbt}) outlived the killed run"
            time.sleep(0.05)
        print(f"\ndbt gone {time.monotonic() - killed_at:.2f} s after kill -9 of the run")
    finally:
        stop(first)
        if dbt is not None and not gone(dbt):
            os.kill(dbt, signal.SIGKILL)
    assert run_lock_holder(db_path) is None  # the kernel released the run lock

    code, text = run(lock_wait_seconds=5)  # at once, no waiting for anything
    assert code == 0, text
    assert "waiting up to" not in text


# --- a second run while one is running ----------------------------------------------------------------


def test_a_second_run_is_refused_at_once_naming_the_first(sandbox_env, db_path):
    first = subprocess.Popen(
        [str(CLOSE_CALLS), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while (holder := run_lock_holder(db_path)) is None or holder.pid != first.pid:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)

        # A lock wait far longer than the test's timeout: finishing at all proves it did not wait.
        second = subprocess.run(
            [str(CLOSE_CALLS), "run"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "CLOSE_CALLS_LOCK_WAIT_SECONDS": "3600"},
        )
        output = second.stdout + second.stderr
        assert second.returncode != 0, output
        assert f"PID {first.pid} (close-calls run), since " in output and str(db_path) in output
        assert "started nothing" in output
        for started_something in (
            "sandbox",
            "loading the Dagster definitions",
            "Traceback",
            "Conflicting lock",
        ):
            assert started_something not in output

        # A Dagster run of the pipeline (the schedule, the UI) is refused before any step.
        defs = build_definitions(
            CloseCallsComponent(duckdb_path=str(db_path)).settings(db_path.parent),
            close_api=CloseApiResource(api_key=sandbox_env.api_key, base_url=sandbox_env.base_url),
        )
        result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
        assert not result.success
        assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
        failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        assert failures and f"PID {first.pid} (close-calls run), since " in str(
            failures[0].event_specific_data.error
        )

        assert first.wait(timeout=300) == 0, first.stdout.read()  # the first run was not disturbed
    finally:
        stop(first)
    assert run_lock_holder(db_path) is None
