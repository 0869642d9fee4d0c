"""Where configuration comes from: environment variables, with defaults that run the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

CLOSE_API_BASE_URL_ENV = "CLOSE_API_BASE_URL"
CLOSE_API_KEY_ENV = "CLOSE_API_KEY"
CLOSE_CALLS_DUCKDB_ENV = "CLOSE_CALLS_DUCKDB"

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
DEFAULT_DUCKDB_PATH = REPO_ROOT / "data" / "close_calls.duckdb"

# The embedded sandbox Close API used when no CLOSE_API_KEY is set. Its key is a fixed dummy, not
# a secret: the sandbox listens on loopback only, for the duration of a run.
SANDBOX_API_KEY = "sandbox-key"
SANDBOX_SEED = 42
SANDBOX_CALLS = 3_000


def duckdb_path() -> str:
    """Absolute path of the warehouse file, so that Dagster and dbt always open the same one."""
    raw = os.environ.get(CLOSE_CALLS_DUCKDB_ENV) or str(DEFAULT_DUCKDB_PATH)
    return str(Path(raw).expanduser().resolve())
