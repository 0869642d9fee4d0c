"""The Airflow DAG's settings: the same environment variables as the Dagster component, read into
plain values when a task runs (never when the DAG file is parsed), with `build_dag(**overrides)`
on top. This module is the one adapter from the environment to values: point it at the project's
settings model when there is one. It imports no Airflow, so it can be used and tested without.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from close_calls_pipeline.core import config

# The key's variable: read by `api_key_from_environment` only, inside the tasks that call Close.
CLOSE_API_KEY_ENV = "CLOSE_API_KEY"
# Airflow's own home (its default: ~/airflow): relative warehouse paths resolve against it, as
# a worker's working directory is not something a deployment controls.
AIRFLOW_HOME_ENV = "AIRFLOW_HOME"


@dataclass(frozen=True)
class PipelineSettings:
    """What one task needs to know, every default filled in. Holds no secret: the API key is
    read separately, by the tasks that call Close, and passed straight to the client."""

    duckdb_path: Path
    base_url: str = config.DEFAULT_BASE_URL
    workers: int = config.DEFAULT_WORKERS
    lock_wait_seconds: float = config.DEFAULT_LOCK_WAIT_SECONDS
    duckdb_memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT
    dbt_memory_limit: str = config.DEFAULT_DBT_MEMORY_LIMIT
    backfill_start: str | None = None
    # Scheduled runs whose logical date matches this cron walk every call (a reconcile).
    reconcile_schedule: str | None = config.DEFAULT_RECONCILE_CRON_SCHEDULE
    sandbox_calls: int = config.SANDBOX_CALLS
    sandbox_seed: int = config.SANDBOX_SEED


SETTING_NAMES = frozenset(f.name for f in fields(PipelineSettings))


def check_overrides(overrides: Mapping[str, object]) -> None:
    """Refuse, when the DAG is built, names that are not settings, and the key above all."""
    if "api_key" in overrides:
        raise ValueError(
            f"the Close API key is not a DAG argument: DAG code is stored and shown by Airflow. "
            f"Set {CLOSE_API_KEY_ENV} in the environment of the Airflow workers instead."
        )
    unknown = sorted(set(overrides) - SETTING_NAMES)
    if unknown:
        raise TypeError(f"unknown settings {unknown}; known: {sorted(SETTING_NAMES)}")
    config.parse_backfill_start(overrides.get("backfill_start"))  # type: ignore[arg-type]


def settings_from_environment(environ: Mapping[str, str], **overrides: object) -> PipelineSettings:
    """The settings from `CLOSE_CALLS_DUCKDB`, `CLOSE_API_BASE_URL` and
    `CLOSE_CALLS_LOCK_WAIT_SECONDS` (unset or empty: the defaults), `overrides` winning."""
    check_overrides(overrides)
    airflow_home = Path(environ.get(AIRFLOW_HOME_ENV) or Path.home() / "airflow")
    raw_path = overrides.pop("duckdb_path", None) or environ.get(config.CLOSE_CALLS_DUCKDB_ENV)
    settings = PipelineSettings(
        duckdb_path=config.resolve_path(
            raw_path, airflow_home.expanduser(), config.DEFAULT_DUCKDB_RELATIVE_PATH
        ),
        base_url=(environ.get(config.CLOSE_API_BASE_URL_ENV) or "").strip()
        or config.DEFAULT_BASE_URL,
        lock_wait_seconds=config.parse_lock_wait_seconds(
            environ.get(config.CLOSE_CALLS_LOCK_WAIT_ENV)
        ),
    )
    if "lock_wait_seconds" in overrides:
        overrides["lock_wait_seconds"] = config.parse_lock_wait_seconds(
            overrides["lock_wait_seconds"]  # type: ignore[arg-type]
        )
    return replace(settings, **overrides)  # type: ignore[arg-type]


def api_key_from_environment(environ: Mapping[str, str]) -> str | None:
    """The Close API key, or None (unset or empty): then the tasks use the embedded sandbox."""
    return (environ.get(CLOSE_API_KEY_ENV) or "").strip() or None
