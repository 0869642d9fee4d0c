"""`close-calls ui` and `close-calls docs`, and the project's persistent Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from close_calls_pipeline.core import config

# The instance `close-calls run`, `close-calls ui` (dg dev) and its schedules share, unless
# DAGSTER_HOME names another. No pool limit: a run killed outright would keep its slot and stall
# every later run; one run at a time is the warehouse's run lock (core/locks.py), which the
# kernel releases whatever way a run ends.
INSTANCE_YAML = """\
# Written by close-calls: the project's own Dagster instance (run history, schedules, checks).
python_logs:
  python_log_level: INFO   # headless runs print INFO and above; DEBUG: change this line
telemetry:
  enabled: false
"""


def dagster_home() -> Path:
    """DAGSTER_HOME if set, else the project's `.dagster_home/` (created with its dagster.yaml)."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.REPO_ROOT / config.DAGSTER_HOME_FOLDER)
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(INSTANCE_YAML)
    return home.resolve()


def venv_tool(name: str) -> str:
    """A command installed next to this Python (the project's venv), by absolute path."""
    return str(Path(sys.executable).parent / name)


def open_ui(port: int) -> int:
    """`dg dev` from the repo root on the project's instance, until Ctrl-C."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home())}
    print(
        f"Dagster UI on http://127.0.0.1:{port} (instance {env['DAGSTER_HOME']}); Ctrl-C stops",
        flush=True,
    )
    try:
        return subprocess.call(
            [venv_tool("dg"), "dev", "--port", str(port)], cwd=config.REPO_ROOT, env=env
        )
    except KeyboardInterrupt:
        return 0


def dbt_docs(port: int, serve: bool) -> int:
    """`dbt docs generate` against this project's warehouse (then `dbt docs serve`)."""
    from close_calls_pipeline.cli.run import load_component
    from close_calls_pipeline.core.dbt_launcher import dbt_vars, real_dbt_executable

    settings = load_component().settings(config.REPO_ROOT)
    if not settings.duckdb_path.exists():
        print(
            f"error: no warehouse at {settings.duckdb_path} yet: run `close-calls run` first",
            file=sys.stderr,
        )
        return 1
    project = [
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROJECT_DIR),
    ]
    generate = [
        real_dbt_executable(),
        "docs",
        "generate",
        *project,
        "--vars",
        dbt_vars(str(settings.duckdb_path), settings.dbt_memory_limit, settings.reporting_timezone),
    ]
    done = subprocess.call(generate, cwd=config.DBT_PROJECT_DIR)
    if done or not serve:
        if not done:
            print(f"dbt docs site: {config.DBT_PROJECT_DIR / 'target' / 'index.html'}")
        return done
    try:
        return subprocess.call(
            [
                real_dbt_executable(),
                "docs",
                "serve",
                "--port",
                str(port),
                *project,
                "--vars",
                dbt_vars(
                    str(settings.duckdb_path),
                    settings.dbt_memory_limit,
                    settings.reporting_timezone,
                ),
            ],
            cwd=config.DBT_PROJECT_DIR,
        )
    except KeyboardInterrupt:
        return 0
