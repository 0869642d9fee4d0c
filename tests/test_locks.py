"""The locks, the published copy and the dbt launcher, with real processes and real DuckDB files.

* a process holding the warehouse file (read-write or read-only) makes `warehouse.connect` wait
  for the configured time, then fail naming that process's PID and the fix; if it lets go in
  time, the open succeeds;
* the run lock: re-entrant in its process, refused at once to another process (PID, since when),
  released by the kernel when its holder is killed with SIGKILL;
* `publish_readonly_copy`: an atomic, read-only, consistent copy; a reader holding the previous
  copy keeps it until it reconnects; nothing left behind;
* the dbt launcher: the process it starts dies when its parent is killed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from helpers.processes import gone, release, start_holder, stop
from helpers.run_lock import run_lock_holder

from close_calls_pipeline.core import config, locks, warehouse
from close_calls_pipeline.core.publish import publish_readonly_copy
from close_calls_pipeline.core.settings import PipelineSettings


def small_warehouse(path: Path, sync_runs: int = 1) -> None:
    """A warehouse with the schema and `sync_runs` more rows of sync state."""
    con = warehouse.connect(str(path))
    try:
        for _ in range(sync_runs):
            now = datetime.now(UTC)
            counts = dict.fromkeys(
                [
                    "calls_inserted",
                    "calls_updated",
                    "calls_deleted",
                    "utterances_written",
                    "records_rejected",
                    "requests",
                    "rate_limited",
                    "retries",
                    "seconds_waited",
                    "records_repaired",
                ],
                0,
            )
            warehouse.append_sync_state(
                con,
                {
                    "run_id": uuid.uuid4().hex,
                    "mode": "incremental",
                    "started_at": now,
                    "finished_at": now,
                    "high_water_mark_before": None,
                    "high_water_mark_after": now,
                    "drift_calls": None,
                    **counts,
                },
            )
    finally:
        con.close()


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "data" / "close_calls.duckdb"
    small_warehouse(path)
    return path


# --- DuckDB's lock: a bounded, logged wait, then the holder's PID and the fix ------------------


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_connect_fails_after_the_wait_naming_the_holder(db_path, mode, caplog):
    holder = start_holder(db_path, mode)
    try:
        caplog.set_level(logging.INFO, logger="close_calls_pipeline.core.locks")
        started = time.monotonic()
        with pytest.raises(locks.WarehouseLockedError) as raised:
            warehouse.connect(str(db_path), lock_wait_seconds=1.5)
        waited = time.monotonic() - started
    finally:
        stop(holder)
    error = raised.value
    assert error.holder.pid == holder.pid  # from DuckDB's own message
    message = str(error)
    assert f"PID {holder.pid} (" in message and str(db_path) in message
    assert str(config.readonly_copy_path(db_path)) in message and "con.close()" in message
    assert config.CLOSE_CALLS_LOCK_WAIT_ENV in message
    assert "\n" not in message  # shown as one line by `close-calls run` and the UI
    assert 1.5 <= waited < 5
    assert any(
        "waiting up to" in r.getMessage() and f"PID {holder.pid}" in r.getMessage()
        for r in caplog.records
    )


def test_connect_proceeds_when_the_holder_lets_go_within_the_wait(db_path, caplog):
    holder = start_holder(db_path, "ro")
    try:
        caplog.set_level(logging.INFO, logger="close_calls_pipeline.core.locks")
        timer = _after(1.0, lambda: release(holder))
        started = time.monotonic()
        con = warehouse.connect(str(db_path), lock_wait_seconds=30)
        waited = time.monotonic() - started
        timer.join()
        assert con.execute("SELECT count(*) FROM close.sync_state").fetchone() == (1,)
        con.close()
    finally:
        stop(holder)
    assert 0.8 <= waited < 10
    assert any("got the warehouse" in r.getMessage() for r in caplog.records)


def test_other_io_errors_are_not_waited_for(tmp_path):
    not_a_database = tmp_path / "notes.duckdb"
    not_a_database.write_text("hello, not a database\n" * 1000)
    started = time.monotonic()
    with pytest.raises(warehouse.WarehouseCorruptError):
        warehouse.connect(str(not_a_database), lock_wait_seconds=30)
    assert time.monotonic() - started < 5


def test_a_damaged_warehouse_says_to_restore_the_read_only_copy(db_path):
    copy = publish_readonly_copy(db_path).path
    with open(db_path, "r+b") as file:  # garbage over the file's header
        file.write(os.urandom(8192))
    with pytest.raises(warehouse.WarehouseCorruptError) as info:
        warehouse.connect(str(db_path), lock_wait_seconds=0)
    message = str(info.value)
    assert "\n" not in message and str(db_path) in message and copy in message
    assert "new warehouse" in message and info.value.path == str(db_path)

    shutil.copyfile(copy, db_path)  # what the message says to do works
    os.chmod(db_path, 0o644)
    con = warehouse.connect(str(db_path), lock_wait_seconds=0)
    assert con.execute("SELECT count(*) FROM close.sync_state").fetchone() == (1,)
    con.close()


def test_a_damaged_warehouse_without_a_copy_says_to_start_a_new_one(db_path):
    db_path.write_bytes(os.urandom(100_000))
    with pytest.raises(warehouse.WarehouseCorruptError, match="no read-only copy") as info:
        warehouse.connect(str(db_path), lock_wait_seconds=0)
    assert "new warehouse" in str(info.value)


def test_lock_wait_setting(monkeypatch):
    from close_calls_pipeline.dagster_component.project import load_component

    project = Path(__file__).resolve().parents[1]
    monkeypatch.delenv(config.CLOSE_CALLS_LOCK_WAIT_ENV, raising=False)
    assert load_component(project).lock_wait_seconds == config.DEFAULT_LOCK_WAIT_SECONDS
    monkeypatch.setenv(config.CLOSE_CALLS_LOCK_WAIT_ENV, "2.5")  # through defs.yaml
    assert load_component(project).lock_wait_seconds == 2.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ValueError, match="lock_wait_seconds"):
            PipelineSettings(lock_wait_seconds=bad)


def _after(seconds: float, action):
    import threading

    thread = threading.Timer(seconds, action)
    thread.start()
    return thread


# --- the run lock ------------------------------------------------------------------------------------

TRY_RUN_LOCK = textwrap.dedent(
    """
    import sys
    from close_calls_pipeline.core import locks
    try:
        held = locks.acquire_run_lock(sys.argv[1], owner="second process")
    except locks.RunInProgressError as error:
        print("refused:", error, flush=True)
        sys.exit(3)
    print("acquired", flush=True)
    sys.stdin.readline()
    """
)


def try_run_lock(db_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", TRY_RUN_LOCK, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_run_lock_is_refused_at_once_to_another_process_and_nests_in_its_own(db_path):
    with locks.acquire_run_lock(db_path, owner="close-calls run"):
        with locks.acquire_run_lock(db_path):  # the Dagster run inside `close-calls run`
            holder = run_lock_holder(db_path)
            assert holder.pid == os.getpid() and holder.owner == "close-calls run"
        # still held after the inner release
        other = try_run_lock(db_path)
        started = time.monotonic()
        out, _ = other.communicate(timeout=30)
        assert other.returncode == 3, out
        assert time.monotonic() - started < 10  # at once: Python start-up, no waiting
        assert f"PID {os.getpid()} (close-calls run), since " in out
        assert str(db_path) in out and "started nothing" in out
    assert run_lock_holder(db_path) is None
    other = try_run_lock(db_path)
    try:
        assert other.stdout.readline().strip() == "acquired"
        holder = run_lock_holder(db_path)
        assert holder.pid == other.pid and holder.owner == "second process"
        with pytest.raises(locks.RunInProgressError, match=f"PID {other.pid} "):
            locks.acquire_run_lock(db_path)
    finally:
        stop(other)


def test_run_lock_of_a_killed_process_is_free_at_once(db_path):
    other = try_run_lock(db_path)
    assert other.stdout.readline().strip() == "acquired"
    other.send_signal(signal.SIGKILL)
    other.wait(timeout=10)
    with locks.acquire_run_lock(db_path) as held:  # no stale lock, no waiting
        assert held is not None
        assert run_lock_holder(db_path).pid == os.getpid()


# --- the published copy ------------------------------------------------------------------------------


def test_publish_is_atomic_read_only_and_readers_keep_their_copy(db_path):
    copy = config.readonly_copy_path(db_path)
    assert copy == db_path.parent / "close_calls_readonly.duckdb"
    with pytest.raises(duckdb.IOException, match="does not exist"):  # before the first publish
        duckdb.connect(str(copy), read_only=True)

    first = publish_readonly_copy(db_path)
    assert first.path == str(copy) and first.size_bytes == copy.stat().st_size
    assert stat.S_IMODE(copy.stat().st_mode) == 0o400  # read-only, owner-only (docs/privacy.md)
    reader = duckdb.connect(str(copy), read_only=True)
    assert reader.execute("SELECT count(*) FROM close.sync_state").fetchone() == (1,)

    small_warehouse(db_path)  # one more sync
    second = publish_readonly_copy(db_path)  # the reader's open copy does not stop it
    assert second.last_sync_finished_at >= first.last_sync_finished_at
    assert reader.execute("SELECT count(*) FROM close.sync_state").fetchone() == (1,)
    reader.close()
    reader = duckdb.connect(str(copy), read_only=True)  # reconnecting sees the new copy
    assert reader.execute("SELECT count(*) FROM close.sync_state").fetchone() == (2,)
    reader.close()

    # The writer's file stays writable, and only the two files, the run lock and the copy the
    # second publish replaced (kept for the next, test_readonly_copy.py) are there.
    con = warehouse.connect(str(db_path), lock_wait_seconds=0)
    con.close()
    assert sorted(p.name for p in db_path.parent.iterdir()) == [
        ".close_calls_readonly.duckdb.previous",
        "close_calls.duckdb",
        "close_calls.duckdb.run.lock",
        "close_calls_readonly.duckdb",
    ]


def test_publish_removes_what_a_killed_publish_or_a_writing_reader_left(db_path):
    copy = config.readonly_copy_path(db_path)
    publish_readonly_copy(db_path)
    stale_temp = copy.with_name(f".{copy.name}.999999.tmp")
    stale_temp.write_bytes(b"half a copy")
    stale_link = copy.with_name(f".{copy.name}.999999.previous.tmp")  # killed before its rename
    os.link(copy, stale_link)
    stale_wal = Path(f"{copy}.wal")
    stale_wal.write_bytes(b"not this copy's")
    publish_readonly_copy(db_path)
    assert not stale_temp.exists() and not stale_wal.exists() and not stale_link.exists()
    con = duckdb.connect(str(copy), read_only=True)
    assert con.execute("SELECT count(*) FROM close.sync_state").fetchone() == (1,)
    con.close()


def test_publish_refuses_while_another_process_runs(db_path):
    other = try_run_lock(db_path)
    try:
        assert other.stdout.readline().strip() == "acquired"
        with pytest.raises(locks.RunInProgressError):
            publish_readonly_copy(db_path)
    finally:
        stop(other)
    assert not config.readonly_copy_path(db_path).exists()


# --- the dbt launcher --------------------------------------------------------------------------------

PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", (
        "from close_calls_pipeline.core.dbt_launcher import exec_dying_with_parent; "
        "exec_dying_with_parent(['/bin/sleep', '120'])")])
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_launched_process_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"/bin/sleep":
        assert time.monotonic() < deadline, "the launcher did not exec its command"
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 5
    while not gone(child):
        assert time.monotonic() < deadline, f"process {child} outlived its killed parent"
        time.sleep(0.05)


def test_dbt_runs_through_the_launcher(tmp_path):
    from close_calls_pipeline.dagster_component.dbt import dbt_project, dbt_resource

    DBT_EXECUTABLE = dbt_resource(dbt_project(config.DBT_PROJECT_DIR, tmp_path)).dbt_executable

    assert Path(DBT_EXECUTABLE).name == "close-calls-dbt"
    done = subprocess.run(
        [DBT_EXECUTABLE, "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and "duckdb" in done.stdout
