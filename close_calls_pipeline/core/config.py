"""Where configuration comes from: environment variables, with defaults that run the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

CLOSE_API_BASE_URL_ENV = "CLOSE_API_BASE_URL"
CLOSE_API_KEY_ENV = "CLOSE_API_KEY"
CLOSE_CALLS_DUCKDB_ENV = "CLOSE_CALLS_DUCKDB"
CLOSE_CALLS_LOCK_WAIT_ENV = "CLOSE_CALLS_LOCK_WAIT_SECONDS"

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
DEFAULT_DUCKDB_PATH = REPO_ROOT / "data" / "close_calls.duckdb"

# How long a run waits for another process (a notebook, a DuckDB CLI, a stray script) to let go
# of the warehouse file before it fails naming that process: long enough for a quick query or a
# previous process to exit, short enough that a notebook left open fails the run well inside the
# hourly schedule instead of silently delaying it.
DEFAULT_LOCK_WAIT_SECONDS = 120.0

# Beside the warehouse, the copy published for readers at the end of every successful run.
READONLY_COPY_SUFFIX = "_readonly"

# The embedded sandbox Close API used when no CLOSE_API_KEY is set. Its key is a fixed dummy, not
# a secret: the sandbox listens on loopback only, for the duration of a run.
SANDBOX_API_KEY = "sandbox-key"
SANDBOX_SEED = 42
SANDBOX_CALLS = 3_000


def duckdb_path() -> str:
    """Absolute path of the warehouse file, so that Dagster and dbt always open the same one."""
    raw = os.environ.get(CLOSE_CALLS_DUCKDB_ENV) or str(DEFAULT_DUCKDB_PATH)
    return str(Path(raw).expanduser().resolve())


def lock_wait_seconds() -> float:
    """How long a run waits for the warehouse file (CLOSE_CALLS_LOCK_WAIT_SECONDS, else the default)."""
    raw = os.environ.get(CLOSE_CALLS_LOCK_WAIT_ENV)
    if not raw:
        return DEFAULT_LOCK_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(
            f"{CLOSE_CALLS_LOCK_WAIT_ENV} must be a number of seconds, got {raw!r}"
        ) from None
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"{CLOSE_CALLS_LOCK_WAIT_ENV} must be 0 or more, got {raw!r}")
    return seconds


def readonly_copy_path(warehouse_path: str | Path) -> Path:
    """The read-only copy readers open: `close_calls_readonly.duckdb` beside `close_calls.duckdb`."""
    path = Path(warehouse_path)
    return path.with_name(f"{path.stem}{READONLY_COPY_SUFFIX}{path.suffix or '.duckdb'}")
