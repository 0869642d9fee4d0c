"""Shared fixtures: sandbox Close API servers on free loopback ports."""

from __future__ import annotations

import pytest

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.dagster_component.without_dbt_core import (
    import_dagster_dbt_without_dbt_core,
)
from close_calls_pipeline.sandbox import SandboxServer, SandboxStore
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS

# The tests' in-process Dagster runs load dagster-dbt as the `close-calls` commands do.
import_dagster_dbt_without_dbt_core()


@pytest.fixture
def connect(tmp_path):
    """Open (and remember to close) DuckDB warehouse files in tmp_path."""
    opened = []

    def _connect(name="warehouse.duckdb"):
        con = warehouse.connect(str(tmp_path / name))
        opened.append(con)
        return con

    yield _connect
    for con in opened:
        con.close()


@pytest.fixture(autouse=True)
def dagster_home(tmp_path_factory, monkeypatch):
    """Runs made by tests go to a throw-away Dagster instance, not the project's .dagster_home."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))


@pytest.fixture
def make_sandbox():
    """Factory for started sandbox servers (api key "test-key"); all are stopped at teardown."""
    servers: list[SandboxServer] = []

    def _make(
        calls: int = 300,
        seed: int = 1,
        start=None,
        live: bool = False,
        history_days: int = HISTORY_DAYS,
        organization_id: str | None = None,
        organization_name: str | None = None,
        **server_kwargs,
    ) -> SandboxServer:
        store = SandboxStore(
            calls=calls,
            seed=seed,
            start=start,
            history_days=history_days,
            live=live,
            organization_id=organization_id,
            organization_name=organization_name,
        )
        server_kwargs.setdefault("api_key", "test-key")
        server = SandboxServer(store, **server_kwargs).start()
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxServer:
    return make_sandbox()
