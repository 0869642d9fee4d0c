"""The Airflow DAG's settings: the project's one model (`core/settings.py`), read from the
environment when a task runs (never when the DAG file is parsed), `build_dag(**overrides)` on
top. What is Airflow's own: relative paths resolve against AIRFLOW_HOME, and the key is never a
DAG argument. It imports no Airflow, so it can be used and tested without.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from close_calls_pipeline.core import settings as core_settings
from close_calls_pipeline.core.settings import PipelineSettings

# Airflow's own home (its default: ~/airflow): relative warehouse paths resolve against it, as
# a worker's working directory is not something a deployment controls.
AIRFLOW_HOME_ENV = "AIRFLOW_HOME"

# Settings that are no `build_dag` argument, and why.
_NOT_DAG_ARGUMENTS = {
    "api_key": "the Close API key is not a DAG argument: DAG code is stored and shown by "
    "Airflow. Set CLOSE_API_KEY in the environment of the Airflow workers, or pass "
    "close_conn_id (an Airflow connection whose password is the key)",
    "cron_schedule": "the DAG's schedule is build_dag(schedule=...)",
}


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse, when the DAG is built, names that are not settings (`TypeError`), the key and
    the schedule, and bad values (`ValueError`)."""
    for name, why in _NOT_DAG_ARGUMENTS.items():
        if name in overrides:
            raise ValueError(why)
    core_settings.settings_from_environment({}, **overrides)


def airflow_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(AIRFLOW_HOME_ENV) or Path.home() / "airflow").expanduser()


def task_settings(environ: Mapping[str, str], **overrides: Any) -> PipelineSettings:
    """A task's settings: the model's environment variables, `overrides` winning, resolved
    against AIRFLOW_HOME (unset warehouse path: `data/close_calls.duckdb` with a key,
    `data/sandbox.duckdb` without)."""
    settings = core_settings.settings_from_environment(environ, **overrides)
    return settings.resolved(airflow_home(environ))
