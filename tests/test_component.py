"""`CloseCallsComponent` in a brand-new `dg` project, and the habits that keep the layout honest.

* a new project (pyproject.toml, definitions.py, defs/) scaffolds the component with `dg`, lists
  its definitions and materializes everything with `dg launch --assets '*'` against the sandbox;
  the warehouse and marts equal the sandbox's truth;
* a snapshot of the asset graph (keys, deps, checks, kinds, groups) fails loudly on any change;
* the core never imports Dagster; one Call field list.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from helpers.processes import run_ok
from helpers.truth import assert_warehouse_matches_truth, mart_counts, truth_counts

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
# `dg` projects and whole pipelines in subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent

DEFINITIONS_PY = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

PYPROJECT = """\
[project]
name = "acme-analytics"
version = "0.1.0"
requires-python = ">=3.11"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "acme_analytics"
"""

DEFS_YAML = """\
type: close_calls_pipeline.CloseCallsComponent
attributes:
  duckdb_path: "{{ env.CLOSE_CALLS_DUCKDB }}"
  api_key: "{{ env.CLOSE_API_KEY }}"
  base_url: "{{ env.CLOSE_API_BASE_URL }}"
  workers: 4
  backfill_start: 2024-01-01
  cron_schedule: "30 * * * *"
  dbt_marts: true
"""


def dg(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ok([str(VENV_BIN / "dg"), *args], cwd=project, env=env)


def test_a_new_dg_project_adds_the_component_and_materializes_everything(make_sandbox, tmp_path):
    sandbox = make_sandbox(calls=300, seed=21)
    project = tmp_path / "acme-analytics"
    package = project / "acme_analytics"
    (package / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS_PY)
    warehouse_path = tmp_path / "warehouse" / "acme.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "CLOSE_CALLS_DUCKDB": str(warehouse_path),
        "CLOSE_API_KEY": sandbox.api_key,
        "CLOSE_API_BASE_URL": sandbox.base_url,
    }

    dg(
        project,
        "scaffold",
        "defs",
        "close_calls_pipeline.CloseCallsComponent",
        "close_calls",
        env=env,
    )
    defs_yaml = package / "defs" / "close_calls" / "defs.yaml"
    scaffolded = defs_yaml.read_text()
    assert "type: close_calls_pipeline.CloseCallsComponent" in scaffolded
    assert "{{ env.CLOSE_API_KEY }}" in scaffolded
    defs_yaml.write_text(DEFS_YAML)

    listed = json.loads(dg(project, "list", "defs", "--json", env=env).stdout)
    keys = {asset["asset_key"] for asset in listed["assets"]}
    assert {
        "close/calls",
        "close/call_transcript_utterances",
        "close/outcomes",
        "close/users",
        "analytics/fct_calls",
    } <= keys
    assert {s["name"]: s["cron_schedule"] for s in listed["schedules"]}[
        "close_calls_hourly"
    ] == "30 * * * *"
    assert sandbox.api_key not in json.dumps(listed)

    launched = dg(project, "launch", "--assets", "*", env=env)
    assert sandbox.api_key not in launched.stdout + launched.stderr
    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        assert_warehouse_matches_truth(con, sandbox.store)
    finally:
        con.close()
    assert mart_counts(warehouse_path) == truth_counts(sandbox.store)

    # The warehouse is that organization's: `dg launch` of dbt alone with another
    # organization's key fails before any step, and leaves the marts as they were.
    other = make_sandbox(calls=30, seed=22, organization_id="orga_someone_else")
    marts = mart_counts(warehouse_path)
    refused = subprocess.run(
        [str(VENV_BIN / "dg"), "launch", "--assets", "group:analytics"],
        cwd=project,
        env={**env, "CLOSE_API_BASE_URL": other.base_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode != 0
    assert "WrongOrganizationError" in refused.stdout + refused.stderr
    assert mart_counts(warehouse_path) == marts


def test_the_component_refuses_a_backfill_start_in_the_future(tmp_path):
    from close_calls_pipeline import CloseCallsComponent

    with pytest.raises(ValueError, match="in the future"):
        CloseCallsComponent(duckdb_path=str(tmp_path / "w.duckdb"), backfill_start="2999-01-01")


# --- the asset graph, as a snapshot -------------------------------------------------------------------


def asset_graph_snapshot() -> dict:
    from close_calls_pipeline.definitions import defs

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "step": definitions.resolve_assets_def(key).node_def.name,
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(check.name for check in node.check_keys),
        }
    return assets


def test_the_asset_graph_matches_its_snapshot():
    """A change to the lineage (a key, a dependency, a check, a kind, a group, a step's name)
    must be deliberate: regenerate with `UPDATE_SNAPSHOTS=1 .venv/bin/pytest
    tests/test_component.py -k snapshot` and review the diff."""
    current = asset_graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


# --- the layout --------------------------------------------------------------------------------------


def test_the_core_imports_neither_dagster_nor_the_benchmarks():
    code = (
        "import sys, pkgutil, importlib, close_calls_pipeline.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'close_calls_pipeline.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('dagster', 'dagster_dbt')\n"
        "             or n.startswith(('close_calls_pipeline.bench', 'close_calls_pipeline.cli',\n"
        "                              'close_calls_pipeline.dagster_component')))\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert done.stdout.strip() == "[]"
