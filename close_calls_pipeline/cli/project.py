"""The project folder as the commands see it: its component's settings, its Dagster instance,
and the tools installed beside this Python."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from close_calls_pipeline.core import config, files

# The instance `close-calls run`, `close-calls ui` and its schedules share, unless DAGSTER_HOME
# names another. No pool limit: a run killed outright would keep its slot and stall every later
# run; one run at a time is the warehouse's run lock (core/locks.py), which the kernel releases
# whatever way a run ends.
INSTANCE_YAML = """\
# Written by close-calls: the project's own Dagster instance (run history, schedules, checks).
python_logs:
  python_log_level: INFO   # headless runs print INFO and above; DEBUG: change this line
telemetry:
  enabled: false
"""


def settings_of(project_dir: Path):
    """The settings of the project's `CloseCallsComponent` (its own defs.yaml, or the packaged
    one), with paths under `project_dir`."""
    from close_calls_pipeline.dagster_component.without_dbt_core import (
        import_dagster_dbt_without_dbt_core,
    )

    import_dagster_dbt_without_dbt_core()  # this process loads no dbt project but the package's
    from close_calls_pipeline.dagster_component.project import load_component

    return load_component(project_dir).settings(project_dir)


def dagster_home(project_dir: Path, file_mode: str = files.PRIVATE) -> Path:
    """DAGSTER_HOME if set, else the project's `.dagster_home/` (created with its dagster.yaml):
    the instance `dg dev`, `dg launch` and `close-calls` all record into when given it. A folder
    it creates is owner-only unless `file_mode` is group: its run logs hold what the runs logged."""
    home = Path(os.environ.get("DAGSTER_HOME") or project_dir / config.DAGSTER_HOME_FOLDER)
    files.private_dir(home, file_mode)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text(INSTANCE_YAML)
        files.restrict(instance_yaml, file_mode)
    return home.resolve()


def venv_tool(name: str) -> str:
    """A command installed next to this Python (the project's venv), by absolute path."""
    return str(Path(sys.executable).parent / name)
