"""The dbt resource does not start dbt once more per run to learn its version, nor load dbt's
adapter into the run's process (dagster_component/dbt.py: CloseDbtCliResource)."""

import json
import os
import shutil
import subprocess
import sys
from functools import cached_property

import dagster_dbt.core.resource as dagster_dbt_resource
import pytest
from dagster_dbt import DbtCliResource
from dbt.version import __version__ as dbt_core_version

from close_calls_pipeline.core import config
from close_calls_pipeline.dagster_component.dbt import dbt_project, dbt_resource, prepare_manifest


def test_the_dbt_version_comes_from_the_installed_dbt_core_without_a_subprocess(
    tmp_path, monkeypatch
):
    # dagster-dbt's own answer is `dbt --version` in a subprocess: it must not run
    def no_subprocess(*args, **kwargs):
        pytest.fail(f"a subprocess was started: {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", no_subprocess)
    resource = dbt_resource(dbt_project(config.DBT_PROJECT_DIR, tmp_path / "target"))
    assert str(resource._cli_version) == dbt_core_version
    assert resource._initialize_dbt_core_adapter(["run"]) is None
    # what the overrides replace is still there: a dagster-dbt that renamed them would be noticed
    assert isinstance(DbtCliResource.__dict__["_cli_version"], cached_property)
    assert callable(DbtCliResource.__dict__["_initialize_dbt_core_adapter"])


# Prints the asset graph the `close-calls` commands load, with or without dbt-core's Python
# modules visible to dagster-dbt, and which dbt-core modules the process imported.
_ASSET_GRAPH = """
import json, sys
from pathlib import Path
if sys.argv[1] == "without dbt-core":
    from close_calls_pipeline.cli.project import settings_of
else:
    import dagster_dbt  # the usual way: dagster-dbt imports dbt-core's modules
    from close_calls_pipeline.cli.project import settings_of
settings = settings_of(Path(sys.argv[2]))  # imports dagster-dbt
from close_calls_pipeline.dagster_component.component import build_definitions
import dagster_dbt.compat

defs = build_definitions(settings)
graph = {}
for assets in defs.resolve_asset_graph().assets_defs:
    for key in assets.keys:
        graph[key.to_user_string()] = sorted(d.to_user_string() for d in assets.asset_deps[key])
    for spec in assets.check_specs:
        graph["check " + spec.key.to_user_string()] = [str(spec.blocking), spec.description or ""]
job = defs.resolve_job_def("close_calls_pipeline")
print(json.dumps({
    "graph": graph,
    "job": sorted(job.graph.node_dict),
    "dbt_core_seen_by_dagster_dbt": dagster_dbt.compat.DBT_PYTHON_VERSION is not None,
    "dbt_core_modules": sorted(m for m in sys.modules if m == "dbt" or m.startswith("dbt.")),
}))
"""


def test_the_commands_load_dagster_dbt_without_dbt_core_and_the_same_assets(tmp_path):
    """dagster-dbt imported without dbt-core's modules (dagster_component/without_dbt_core.py)
    gives the same assets, dependencies, checks and job as with them, and a `close-calls`
    process imports none of dbt-core's modules: they are a second of every run's start-up."""

    def asset_graph(way: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _ASSET_GRAPH, way, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout.splitlines()[-1])

    usual, without = asset_graph("usual"), asset_graph("without dbt-core")
    assert usual["dbt_core_seen_by_dagster_dbt"] and usual["dbt_core_modules"]
    assert not without["dbt_core_seen_by_dagster_dbt"]
    assert without["dbt_core_modules"] == []
    assert without["graph"] == usual["graph"]
    assert without["job"] == usual["job"]
    assert sum(name.startswith("check ") for name in usual["graph"]) > 100  # the dbt tests


def test_dbt_core_imports_as_usual_after_dagster_dbt_was_imported_without_it():
    script = (
        "from close_calls_pipeline.dagster_component.without_dbt_core import "
        "import_dagster_dbt_without_dbt_core as hide; hide(); "
        "import dagster_dbt.compat, dbt.version; "
        "print(dagster_dbt.compat.DBT_PYTHON_VERSION, dbt.version.__version__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["None", dbt_core_version]


@pytest.mark.slow
def test_the_manifest_follows_the_project_files_content_not_their_times(tmp_path):
    """An upgrade can install project files older than the manifest an earlier release parsed,
    and a deleted model leaves no newer file: either way the manifest is parsed again (one a
    previous release left listed a model dbt no longer builds, and the run skipped the steps
    after dbt). An unchanged project is not parsed again."""
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(
        config.DBT_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target", "logs")
    )
    project = dbt_project(project_dir, tmp_path / "target")

    def models() -> set[str]:
        nodes = json.loads(prepare_manifest(project).read_text())["nodes"]
        return {uid for uid in nodes if uid.startswith("model.")}

    before = models()
    parsed_at = project.manifest_path.stat().st_mtime_ns
    assert models() == before and project.manifest_path.stat().st_mtime_ns == parsed_at
    probe = project_dir / "models" / "marts" / "zz_probe.sql"
    probe.write_text("select 1 as x\n")
    os.utime(probe, (0, 0))  # older than the manifest, as an installed file can be
    assert models() == before | {"model.close_calls.zz_probe"}
    probe.unlink()
    assert models() == before
