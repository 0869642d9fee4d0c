"""Who may write the warehouse, and how long a writer waits for it.

Two locks guard the DuckDB file:

* **DuckDB's own lock.** One process at a time may open the file read-write, and a process that
  has it open at all (even read-only) keeps every other process from writing it. DuckDB does not
  wait: the open fails at once with `Could not set lock on file ... (PID n)`. `wait_for_warehouse`
  retries such an open for a bounded time, logging who holds the file, then fails with a
  `WarehouseLockedError` naming that process and what to do about it.
* **The run lock.** An `flock` on `<warehouse>.run.lock`, held for a whole run (sync, checks,
  dbt, publish), so that a second run fails at once, naming the first (PID, since when), before
  it starts anything. The lock file records who holds it; the lock itself belongs to the kernel,
  which releases it when the process exits however it exits (`kill -9` included), so it is never
  stale. It is re-entrant within a process: `close-calls run` takes it, and the Dagster run it
  starts in the same process takes it again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self, TypeVar

import duckdb

from close_calls_pipeline.core import config, storage_version
from close_calls_pipeline.core.sql_text import literal

log = logging.getLogger(__name__)

T = TypeVar("T")

# --- DuckDB's lock on the warehouse file -------------------------------------------------------------

# DuckDB (1.x, 2.x): 'IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held
# in /usr/bin/python3.11 (PID 12403) by user ... See also ...' (the user part is optional).
_DUCKDB_LOCK_ERROR = re.compile(
    r'Could not set lock on file "(?P<file>[^"]*)": Conflicting lock is held in '
    r"(?P<program>.*?) \(PID (?P<pid>\d+)\)"
)
_LOG_EVERY_SECONDS = 15.0


@dataclass(frozen=True)
class FileHolder:
    """The process DuckDB names as holding the warehouse file."""

    pid: int
    program: str

    def describe(self) -> str:
        """`PID 123 (python -m ipykernel_launcher -f ...)`: its command line when it can be read."""
        if self.pid == os.getpid():
            return f"PID {self.pid} (this process)"
        return f"PID {self.pid} ({_command_line(self.pid) or self.program})"


def _command_line(pid: int, limit: int = 160) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # One line, whatever the arguments hold (a `python -c` script has newlines).
    text = " ".join(" ".join(part.decode(errors="replace").split()) for part in raw.split(b"\0"))
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def duckdb_lock_holder(error: BaseException) -> FileHolder | None:
    """The holder named by DuckDB's lock error, or None when `error` is not a lock conflict."""
    if not isinstance(error, duckdb.IOException):
        return None
    match = _DUCKDB_LOCK_ERROR.search(str(error))
    if match is None:
        return None
    return FileHolder(pid=int(match["pid"]), program=match["program"])


class WarehouseLockedError(RuntimeError):
    """Another process kept the warehouse file for longer than the run was allowed to wait."""

    def __init__(self, path: str | Path, holder: FileHolder, waited_seconds: float):
        self.path = str(path)
        self.holder = holder
        self.waited_seconds = waited_seconds
        copy = config.readonly_copy_path(path)
        if waited_seconds >= 0.05:
            waited = f"waited {_seconds(waited_seconds)} s ({config.CLOSE_CALLS_LOCK_WAIT_ENV})"
        else:
            waited = (
                f"no wait left ({config.CLOSE_CALLS_LOCK_WAIT_ENV} is 0 or used up by this run)"
            )
        # One line: `close-calls run` and the Dagster UI show the first line of an error.
        super().__init__(
            f"the warehouse {self.path} is held by {holder.describe()}; {waited}. Close that "
            f"process's connection to {self.path} (con.close() in the notebook, quit the duckdb "
            f"CLI), or open {copy} instead: the read-only copy each run publishes for readers."
        )


def wait_for_warehouse(
    open_warehouse: Callable[[], T],
    path: str | Path,
    wait_seconds: float | None = None,
    *,
    poll_seconds: float = 0.2,
) -> T:
    """`open_warehouse()`, retried while another process holds the DuckDB file, for at most
    `wait_seconds` (default: `config.DEFAULT_LOCK_WAIT_SECONDS`); then `WarehouseLockedError`.

    Logs when it starts waiting, every 15 s while it waits, and when it gets the file. Errors
    other than a lock conflict are raised at once (a file from a newer DuckDB as
    `storage_version.WarehouseFromNewerDuckDBError`)."""
    limit = config.DEFAULT_LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds
    started = time.monotonic()
    next_log = started
    holder: FileHolder | None = None
    while True:
        try:
            result = open_warehouse()
        except duckdb.IOException as error:
            holder = duckdb_lock_holder(error)
            if holder is None:
                storage_version.raise_if_written_by_newer_duckdb(path, error)
                raise
            now = time.monotonic()
            waited = now - started
            if waited >= limit:
                raise WarehouseLockedError(path, holder, waited) from None
            if now >= next_log:
                first = next_log == started
                log.warning(
                    "the warehouse %s is held by %s: %s up to %s s more for it to close (%s)",
                    path,
                    holder.describe(),
                    "waiting" if first else "still waiting",
                    _seconds(limit - waited),
                    config.CLOSE_CALLS_LOCK_WAIT_ENV,
                )
                next_log = now + _LOG_EVERY_SECONDS
            time.sleep(max(0.0, min(poll_seconds, limit - waited)))
            continue
        if holder is not None:
            log.info("got the warehouse %s after waiting %.1f s", path, time.monotonic() - started)
        return result


def wait_until_writable(path: str | Path, wait_seconds: float | None = None) -> None:
    """Return once this process could open the warehouse read-write (and has closed it again):
    what a step that hands the file to another process (dbt) checks first."""
    con = duckdb.connect()
    try:
        wait_for_warehouse(
            lambda: con.execute(f"ATTACH {literal(str(path))} AS warehouse_probe"),
            path,
            wait_seconds,
        )
    finally:
        con.close()


# --- the run lock ------------------------------------------------------------------------------------


def run_lock_path(warehouse_path: str | Path) -> Path:
    """`close_calls.duckdb.run.lock` beside the warehouse."""
    return Path(f"{Path(warehouse_path).resolve()}.run.lock")


@dataclass(frozen=True)
class RunLockHolder:
    """What the lock file says about the run that holds it."""

    pid: int | None
    started_at: datetime | None
    owner: str
    host: str | None = None

    def describe(self) -> str:
        pid = f"PID {self.pid}" if self.pid is not None else "an unknown process"
        if self.host and self.host != socket.gethostname():
            pid += f" on {self.host}"
        since = ""
        if self.started_at is not None:
            age = max(0, int((datetime.now(UTC) - self.started_at).total_seconds()))
            since = (
                f", since {self.started_at.strftime('%Y-%m-%d %H:%M:%S')} UTC "
                f"({age // 60} min {age % 60} s ago)"
            )
        return f"{pid} ({self.owner}){since}"


class RunInProgressError(RuntimeError):
    """Another run holds the warehouse's run lock."""

    def __init__(self, warehouse_path: str | Path, holder: RunLockHolder):
        self.path = str(warehouse_path)
        self.holder = holder
        super().__init__(
            f"another run is writing the warehouse {self.path}: {holder.describe()}. This run "
            f"started nothing; wait for that one to finish (or stop it) and run again."
        )


@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[str, _Held] = {}  # lock file path -> this process's hold on it
_held_guard = threading.Lock()


class RunLock:
    """This process's hold on a warehouse's run lock; `release()` (or leave the `with` block)."""

    def __init__(self, key: str):
        self._key: str | None = key

    def release(self) -> None:
        with _held_guard:
            if self._key is None:
                return
            held = _held[self._key]
            held.depth -= 1
            if held.depth == 0:
                del _held[self._key]
                os.ftruncate(held.fd, 0)  # the next reader sees no stale holder
                os.close(held.fd)  # closing the descriptor releases the flock
            self._key = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def acquire_run_lock(warehouse_path: str | Path, owner: str | None = None) -> RunLock:
    """Take the warehouse's run lock, or raise `RunInProgressError` at once (no waiting).

    `owner` says what the run is (`close-calls run`, `Dagster run <id>`); by default, this
    process's command line. Taken again in a process that holds it, it nests."""
    path = run_lock_path(warehouse_path)
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key].depth += 1
            return RunLock(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunInProgressError(warehouse_path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "owner": owner or _command_line(os.getpid()) or " ".join(sys.argv),
            "host": socket.gethostname(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _held[key] = _Held(fd, 1)
    return RunLock(key)


def _read_holder(fd: int) -> RunLockHolder:
    """The holder recorded in the lock file (it may be writing it: retried for half a second)."""
    deadline = time.monotonic() + 0.5
    while True:
        raw = os.pread(fd, 4096, 0)
        try:
            info = json.loads(raw)
            started = datetime.fromisoformat(info["started_at"])
            return RunLockHolder(
                pid=int(info["pid"]),
                started_at=started,
                owner=str(info.get("owner") or "?"),
                host=info.get("host"),
            )
        except (ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return RunLockHolder(pid=None, started_at=None, owner="no details recorded")
            time.sleep(0.05)
