"""Dagster resources: the Close API client, the DuckDB warehouse and the dbt project.

* `CloseApiResource` hands out a `CloseClient` for the duration of a step. Without an API key it
  starts the embedded sandbox Close API on loopback (live mode: its data is a deterministic
  function of the seed and the wall clock, so every hourly run sees new, updated and deleted
  calls) and points the client at it. The key is read through `EnvVar`, so it is resolved at
  launch and never shown in the UI, logs or metadata.
* `WarehouseResource` opens the DuckDB file through `warehouse.connect` (UTC session, memory
  limit, the `close` schema) for as short as possible: DuckDB has one writer per file, and dbt
  opens the same file in its own process after the ingestion steps.
* `dbt_project` / `DbtCliResource`: the dbt project in `dbt_project/`, whose manifest is
  prepared at load time when it is missing or older than the project's files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, EnvVar, InitResourceContext, get_dagster_logger
from dagster_dbt import DbtCliResource, DbtProject
from pydantic import Field, PrivateAttr

from close_calls_pipeline.core import config, dbt_launcher, locks, warehouse
from close_calls_pipeline.core.close_api import CloseClient

log = logging.getLogger(__name__)



class CloseApiResource(ConfigurableResource):
    """Close API access. No `api_key`: an embedded sandbox Close API serves the step."""

    api_key: str | None = Field(
        default=None,
        description="Close API key (from CLOSE_API_KEY). Unset: the embedded sandbox is used.",
    )
    base_url: str = Field(
        default=config.DEFAULT_BASE_URL,
        description="Close API base URL (from CLOSE_API_BASE_URL).",
    )
    workers: int = Field(default=8, description="Concurrent requests (HTTP pool size).")
    extra_call_fields: list[str] = Field(
        default_factory=list,
        description="Call fields to request beyond the documented ones, e.g. custom fields "
        "('custom.cf_...'): every call request names an explicit _fields list.",
    )
    sandbox_calls: int = Field(
        default=config.SANDBOX_CALLS, description="Calls in the embedded sandbox's seeded history."
    )
    sandbox_seed: int = Field(default=config.SANDBOX_SEED, description="Seed of the embedded sandbox.")

    @property
    def uses_sandbox(self) -> bool:
        return not self.api_key

    @contextmanager
    def get_client(self) -> Iterator[CloseClient]:
        """A client for the duration of the `with` block (sandbox started and stopped with it)."""
        with ExitStack() as stack:
            api_key, base_url = self.api_key, self.base_url
            if not api_key:
                from close_calls_pipeline.core.sandbox import start_sandbox

                server = start_sandbox(calls=self.sandbox_calls, seed=self.sandbox_seed, live=True,
                                       api_key=config.SANDBOX_API_KEY)
                stack.callback(server.stop)
                get_dagster_logger().info(  # shown in the run's logs in the UI
                    "CLOSE_API_KEY is not set: using the embedded sandbox Close API at %s "
                    "(%d seeded calls, seed %d, live)", server.base_url, self.sandbox_calls,
                    self.sandbox_seed,
                )
                api_key, base_url = config.SANDBOX_API_KEY, server.base_url
            yield stack.enter_context(CloseClient(
                api_key, base_url, pool_size=self.workers,
                extra_call_fields=tuple(self.extra_call_fields)))

    @classmethod
    def from_env(cls) -> CloseApiResource:
        """Key and base URL from the environment, as `EnvVar`s (resolved at launch, not now)."""
        return cls(
            api_key=EnvVar(config.CLOSE_API_KEY_ENV) if os.environ.get(config.CLOSE_API_KEY_ENV)
            else None,
            base_url=EnvVar(config.CLOSE_API_BASE_URL_ENV)
            if os.environ.get(config.CLOSE_API_BASE_URL_ENV) else config.DEFAULT_BASE_URL,
        )


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file (absolute path), opened briefly with `warehouse.connect`.

    A run that uses it holds the warehouse's run lock (`core/locks.py`) from start to end: a
    second run fails at once, before any step, naming the first. While another process holds
    the file, its steps wait for it, `lock_wait_seconds` at most over the whole run."""

    path: str = Field(description="Absolute path of the DuckDB file (CLOSE_CALLS_DUCKDB).")
    memory_limit: str = Field(default="256MB", description="DuckDB memory limit of a session.")
    lock_wait_seconds: float = Field(
        default=config.DEFAULT_LOCK_WAIT_SECONDS,
        description="How long a run waits, over all its steps, for another process (a notebook, "
        "the DuckDB CLI) to let go of the file before failing with its PID "
        "(CLOSE_CALLS_LOCK_WAIT_SECONDS).",
    )
    _run_lock: locks.RunLock | None = PrivateAttr(default=None)
    _seconds_opening: float = PrivateAttr(default=0.0)  # this run's time spent opening the file

    def setup_for_execution(self, context: InitResourceContext) -> None:
        owner = f"Dagster run {context.run.run_id}" if context.run else None
        self._run_lock = locks.acquire_run_lock(self.path, owner=owner)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._opening() as wait:
            con = warehouse.connect(
                self.path,
                memory_limit=self.memory_limit,
                lock_wait_seconds=wait,
                logger=get_dagster_logger(),
            )
        try:
            yield con
        finally:
            con.close()

    def wait_until_writable(self) -> None:
        """Before handing the file to another process (dbt): wait, as `connect` does."""
        with self._opening() as wait:
            locks.wait_until_writable(self.path, wait, logger=get_dagster_logger())

    @contextmanager
    def _opening(self) -> Iterator[float]:
        """The wait this open may use: what the run has left of `lock_wait_seconds`."""
        started = time.monotonic()
        try:
            yield max(0.0, self.lock_wait_seconds - self._seconds_opening)
        finally:
            self._seconds_opening += time.monotonic() - started


# --- dbt ------------------------------------------------------------------------------------------

dbt_project = DbtProject(project_dir=config.DBT_PROJECT_DIR, profiles_dir=config.DBT_PROJECT_DIR)

_DBT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests", "seeds",
                "snapshots", "analyses")


def _newest_project_file(project_dir: Path) -> float:
    newest = 0.0
    for name in _DBT_SOURCES:
        path = project_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.is_file():
                    newest = max(newest, child.stat().st_mtime)
    return newest


def _dbt_executable() -> str:
    """`dbt` on PATH, else the one installed next to this Python (a venv used without activation)."""
    beside_python = Path(sys.executable).parent / "dbt"
    return shutil.which("dbt") or str(beside_python)


# dbt runs through `close-calls-dbt`, which dies with the run that started it (dbt_launcher.py).
DBT_EXECUTABLE = dbt_launcher.launcher_executable(_dbt_executable())


def prepare_dbt_manifest(project: DbtProject = dbt_project) -> Path:
    """Make sure `target/manifest.json` exists and is current (`dbt parse`), then return it.

    A fresh clone has no target/ directory; `dagster dev`, `dagster asset materialize`, the main
    job and the tests all load the definitions through here, so none needs a manual step.
    `dbt parse` does not open the warehouse; a file lock keeps concurrent loaders (the code
    server and run workers of `dagster dev`) from parsing at the same time.
    """
    manifest = project.manifest_path

    def stale() -> bool:
        return not manifest.exists() or \
            manifest.stat().st_mtime < _newest_project_file(project.project_dir)

    if stale():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with open(manifest.parent / ".prepare.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if stale():
                    log.info("preparing the dbt manifest (dbt parse) at %s", manifest)
                    DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
                        ["parse", "--quiet"], target_path=project.target_path
                    ).wait()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return manifest


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)
