"""Dagster resources: Close (or the sandbox Close API), the DuckDB warehouse and dbt.

* `CloseApiResource` hands out a `CloseClient` for a step. Its key is an `EnvVar`, resolved at
  launch and never shown in the UI, logs, metadata or run config.
* `SandboxCloseApiResource` is its stand-in when no key is configured (like the live / fake
  client pair of Dagster's `project_fully_featured` example): it starts the sandbox Close API on
  loopback once per run (the steps run in one process) and stops it when the run ends. Its data
  is a deterministic function of the seed and the wall clock, so every hourly run sees new,
  updated and deleted calls.
* `close_api_resource` is the one place that chooses between them.
* `WarehouseResource` opens the DuckDB file briefly through `warehouse.connect`: DuckDB has one
  writer per file, and dbt opens the same file in its own process after the ingestion steps.
  Every step that reads or writes the warehouse needs it, so its setup is where a run, whatever
  it materializes (the whole pipeline, dbt alone, the report, the copy), takes the run lock and
  checks that the API answers for the warehouse's organization (`core/identity.py`), before any
  step starts. It holds the Close API resource for that check (Dagster sets up its own copy of a
  nested resource; the sandbox's copies of one run share one server).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import duckdb
from dagster import ConfigurableResource, EnvVar, InitResourceContext, get_dagster_logger
from pydantic import Field, PrivateAttr

from close_calls_pipeline.core import config, files, identity, locks, warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.lake import Lake, lake_of, one_instance_per_lake
from close_calls_pipeline.core.personal_data import HASH_KEY_ENV, CallPolice, PersonalDataPolicy
from close_calls_pipeline.core.settings import PipelineSettings, default_of
from close_calls_pipeline.dagster_component import run_log


def _setting(name: str) -> Any:
    """A resource argument that is the setting `name`: its default and description."""
    info = PipelineSettings.model_fields[name]
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=info.description)
    return Field(default=default_of(info), description=info.description)


log = logging.getLogger(__name__)


class CloseApiResource(ConfigurableResource):
    """The Close API, with an API key."""

    api_key: str = Field(description="Close API key (an EnvVar: resolved at launch, never shown).")
    base_url: str = _setting("base_url")
    workers: int = _setting("workers")
    extra_call_fields: list[str] = _setting("extra_call_fields")

    @property
    def source(self) -> str:
        """What the metadata calls this source."""
        return "close"

    @property
    def recorded_base_url(self) -> str | None:
        """The base URL a warehouse records for its organization (None: the embedded sandbox,
        whose loopback port changes with every run)."""
        return self.base_url

    def organization(self) -> identity.Organization:
        """The organization the API answers for (`GET /me/`)."""
        with self.get_client() as client:
            return identity.organization_from_me(client.me(), is_sandbox=self.source == "sandbox")

    def _endpoint(self) -> tuple[str, str]:
        return self.api_key, self.base_url

    @contextmanager
    def get_client(self) -> Iterator[CloseClient]:
        """A client for the duration of the `with` block."""
        api_key, base_url = self._endpoint()
        with CloseClient(
            api_key,
            base_url,
            pool_size=self.workers,
            extra_call_fields=tuple(self.extra_call_fields),
        ) as client:
            yield client


class SandboxCloseApiResource(CloseApiResource):
    """The embedded sandbox Close API, started on loopback for the duration of a run."""

    api_key: str = Field(default=config.SANDBOX_API_KEY, description="The sandbox's dummy key.")
    calls: int = _setting("sandbox_calls")
    seed: int = _setting("sandbox_seed")
    _server = PrivateAttr(default=None)

    _share_key: tuple | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return "sandbox"

    @property
    def recorded_base_url(self) -> str | None:
        return None

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from close_calls_pipeline.sandbox import start_sandbox
        from close_calls_pipeline.sandbox.clock import HISTORY_DAYS

        # One server per run: the warehouse resource's copy (for the organization check) and
        # the steps' copy share it. Outside a run (no run id) each copy has its own.
        self._share_key = (
            context.run.run_id if context.run else id(self),
            self.calls,
            HISTORY_DAYS,
            self.seed,
            self.api_key,
        )
        with _sandboxes_guard:
            shared = _sandboxes.get(self._share_key)
            if shared is None:
                server = start_sandbox(
                    calls=self.calls, seed=self.seed, live=True, api_key=self.api_key
                )
                shared = _sandboxes[self._share_key] = [server, 0]
                get_dagster_logger().info(
                    "No Close API key is configured: using the embedded sandbox Close API at "
                    "%s (%d calls in a %d-day window sliding with the clock, seed %d)",
                    server.base_url,
                    self.calls,
                    HISTORY_DAYS,
                    self.seed,
                )
            shared[1] += 1
            self._server = shared[0]

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        with _sandboxes_guard:
            shared = _sandboxes.get(self._share_key)
            if shared is not None:
                shared[1] -= 1
                if shared[1] == 0:
                    del _sandboxes[self._share_key]
                    shared[0].stop()
        self._server = None

    def _endpoint(self) -> tuple[str, str]:
        if self._server is None:
            raise RuntimeError("the sandbox Close API is started when a run initializes resources")
        return self.api_key, self._server.base_url


_sandboxes: dict[tuple, list] = {}  # run -> [its sandbox server, resource copies using it]
_sandboxes_guard = threading.Lock()


def close_api_resource(
    api_key: str | EnvVar | None,
    *,
    base_url: str | None,
    workers: int,
    extra_call_fields: list[str],
    sandbox_calls: int,
    sandbox_seed: int,
) -> CloseApiResource:
    """Close when there is a key, else the embedded sandbox: the one place that chooses. A base
    URL without a key is refused: it names an API the run could not use, and quietly syncing
    the sandbox instead would write another organization's data."""
    config.refuse_base_url_without_key(api_key, base_url)
    if api_key:
        return CloseApiResource(
            api_key=api_key,
            base_url=base_url or config.DEFAULT_BASE_URL,
            workers=workers,
            extra_call_fields=extra_call_fields,
        )
    return SandboxCloseApiResource(
        calls=sandbox_calls,
        seed=sandbox_seed,
        workers=workers,
        extra_call_fields=extra_call_fields,
    )


class WarehouseResource(ConfigurableResource):
    """The warehouse: the DuckDB file (absolute path), or the DuckLake when `lake_catalog` and
    `lake_data_path` are set (docs/lake.md), opened briefly with `warehouse.connect`.

    A run that uses it holds the warehouse's run lock (`core/locks.py`) from start to end: a
    second run fails at once, before any step, naming the first. While another process holds
    the file, its steps wait for it, `lock_wait_seconds` at most over the whole run (a lake
    has no such lock: readers attach it read-only while a run writes)."""

    path: str = Field(
        description="Absolute path of the DuckDB file (with a lake: where the run lock and the "
        "report go beside)."
    )
    lake_catalog: str | None = _setting("lake_catalog")
    lake_data_path: str | None = _setting("lake_data_path")
    close_api: CloseApiResource = Field(
        description="The API that feeds the warehouse: a run starts only if it answers for the "
        "organization the warehouse belongs to."
    )
    memory_limit: str = _setting("duckdb_memory_limit")
    dbt_memory_limit: str = _setting("dbt_memory_limit")
    lock_wait_seconds: float = _setting("lock_wait_seconds")
    personal_data: dict[str, str] = Field(
        default_factory=dict,
        description=PipelineSettings.model_fields["personal_data"].description,
    )
    file_mode: str = _setting("file_mode")
    _run_lock: locks.RunLock | None = PrivateAttr(default=None)
    _seconds_opening: float = PrivateAttr(default=0.0)  # this run's time spent opening the file
    _umask_before: int | None = PrivateAttr(default=None)
    _lake_instances: ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Whatever the run creates (the lock file and its folder, DuckDB's WAL, dbt's target
        # files) is born private.
        self._umask_before = files.set_umask(self.file_mode)
        owner = f"Dagster run {context.run.run_id}" if context.run else None
        run_log.start()  # the package's lines in the run's event log, until teardown
        # A lake's connections in this run share one DuckDB instance (steps run in this process).
        self._lake_instances = ExitStack()
        self._lake_instances.enter_context(one_instance_per_lake())
        try:
            # `hash` without a key fails here, before any request (the organization check's).
            CallPolice(self.personal_data_policy(), self.hash_key())
            self._run_lock = locks.acquire_run_lock(
                warehouse.run_lock_anchor(self.path, self.lake), owner=owner
            )
            self._check_organization()
        except BaseException:
            if self._run_lock is not None:
                self._run_lock.release()
                self._run_lock = None
            os.umask(self._umask_before)
            self._umask_before = None
            self._lake_instances.close()
            run_log.stop()
            raise

    def _check_organization(self) -> None:
        """Before any step: the API answers for the warehouse's organization (or the warehouse
        is new, and becomes that organization's)."""
        organization = self.close_api.organization()
        with self._opening() as wait:
            identity.check_organization(
                self.target,
                organization,
                api_base_url=self.close_api.recorded_base_url,
                lock_wait_seconds=wait,
                file_mode=self.file_mode,
            )
        log.info("Syncing %s into %s", organization.describe(), warehouse.describe(self.target))

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._umask_before is not None:
            os.umask(self._umask_before)
            self._umask_before = None
        if self._lake_instances is not None:
            self._lake_instances.close()
            self._lake_instances = None
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None
        run_log.stop()

    @property
    def lake(self) -> Lake | None:
        """The DuckLake the warehouse lives in; None: the DuckDB file `path`."""
        return lake_of(self.lake_catalog, self.lake_data_path)

    @property
    def target(self) -> warehouse.Target:
        """What `warehouse.connect` opens: the lake, else the file."""
        return self.lake or self.path

    def personal_data_policy(self) -> PersonalDataPolicy:
        return PersonalDataPolicy.of(self.personal_data)

    @staticmethod
    def hash_key() -> bytes | None:
        """The key of `phone_numbers: hash`, read from CLOSE_CALLS_HASH_KEY when a run starts
        (like the API key, never part of the definitions or run config)."""
        key = os.environ.get(HASH_KEY_ENV, "")
        return key.encode() if key else None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._opening() as wait:
            con = warehouse.connect(
                self.target,
                memory_limit=self.memory_limit,
                lock_wait_seconds=wait,
                file_mode=self.file_mode,
            )
        try:
            yield con
        finally:
            con.close()

    def wait_until_writable(self) -> None:
        """Before handing the file to another process (dbt): wait, as `connect` does (a lake
        has no file to wait for)."""
        if self.lake is not None:
            return
        with self._opening() as wait:
            locks.wait_until_writable(self.path, wait)

    @contextmanager
    def _opening(self) -> Iterator[float]:
        """The wait this open may use: what the run has left of `lock_wait_seconds`."""
        started = time.monotonic()
        try:
            yield max(0.0, self.lock_wait_seconds - self._seconds_opening)
        finally:
            self._seconds_opening += time.monotonic() - started
