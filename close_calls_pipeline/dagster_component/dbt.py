"""The bundled dbt project as Dagster assets, one lineage below the ingestion assets.

dbt is handed the warehouse's absolute path and memory limit as `--vars` (profiles.yml reads
them), so nothing writes the process environment. Its artefacts go under the project folder (never
into the installed package, which may be read-only): the manifest in the target path, each run's
in one fixed folder below it, overwritten by each run, so disk use does not grow with the
number of runs.
"""

import fcntl
import json
import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from close_calls_pipeline.core import dbt_launcher
from close_calls_pipeline.dagster_component.keys import ANALYTICS_GROUP, WAREHOUSE_POOL
from close_calls_pipeline.dagster_component.resources import WarehouseResource

log = logging.getLogger(__name__)

# Folders and files whose change makes the manifest stale.
_DBT_SOURCES = (
    "dbt_project.yml",
    "profiles.yml",
    "models",
    "macros",
    "tests",
    "seeds",
    "snapshots",
    "analyses",
)
RUN_TARGET = "dagster"  # below the target path: artefacts of the latest run only


def dbt_project(project_dir: Path, target_path: Path) -> DbtProject:
    """The bundled dbt project, its artefacts in `target_path` (absolute)."""
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target_path=target_path)


def _newest_project_file(project_dir: Path) -> float:
    newest = 0.0
    for name in _DBT_SOURCES:
        path = project_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.is_file():
                    newest = max(newest, child.stat().st_mtime)
    return newest


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """dbt runs through `close-calls-dbt`, which dies with the run that started it."""
    return DbtCliResource(
        project_dir=project,
        dbt_executable=dbt_launcher.launcher_executable(dbt_launcher.real_dbt_executable()),
    )


def prepare_manifest(project: DbtProject) -> Path:
    """`target/manifest.json`, made by `dbt parse` only when it is missing or older than the
    project's files: loading the definitions runs no subprocess when the manifest is current.
    A file lock keeps concurrent loaders (code server, run workers) from parsing twice."""
    manifest = project.manifest_path

    def stale() -> bool:
        return not manifest.exists() or manifest.stat().st_mtime < _newest_project_file(
            project.project_dir
        )

    if stale():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with open(manifest.parent / ".prepare.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stale():
                log.info("preparing the dbt manifest (dbt parse) at %s", manifest)
                dbt_resource(project).cli(
                    ["parse", "--quiet"], target_path=project.target_path
                ).wait()
    return manifest


@cache
def load_manifest(manifest_path: Path) -> dict:
    return json.loads(manifest_path.read_text())


def source_descriptions(manifest: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Table and column descriptions of the dbt `close` source, keyed by table name."""
    out = {}
    for source in manifest.get("sources", {}).values():
        if source.get("source_name") == "close":
            out[source["name"]] = (
                (source.get("description") or "").strip(),
                {
                    name: (col.get("description") or "").strip()
                    for name, col in (source.get("columns") or {}).items()
                },
            )
    return out


class CloseDbtTranslator(DagsterDbtTranslator):
    """dbt models in the `analytics` group; the `close` source tables are the ingestion assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if (
            dbt_resource_props["resource_type"] == "source"
            and dbt_resource_props["source_name"] == "close"
        ):
            return AssetKey(["close", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return ANALYTICS_GROUP


def build_dbt_assets(project: DbtProject) -> AssetsDefinition:
    """`dbt build` of the bundled project, its tests as asset checks."""
    translator = CloseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    @dbt_assets(
        manifest=load_manifest(prepare_manifest(project)),
        project=project,
        dagster_dbt_translator=translator,
        pool=WAREHOUSE_POOL,
    )
    def close_calls_dbt(
        context: AssetExecutionContext, dbt: DbtCliResource, duckdb_warehouse: WarehouseResource
    ):
        """`dbt build`: the staging views and the analytics marts, with their tests as checks."""
        # dbt opens the file itself and does not wait for it: wait here (bounded, logged) while
        # another process (a notebook) holds it.
        duckdb_warehouse.wait_until_writable()
        invocation = dbt.cli(
            [
                "build",
                "--vars",
                dbt_launcher.dbt_vars(duckdb_warehouse.path, duckdb_warehouse.dbt_memory_limit),
            ],
            context=context,
            target_path=project.target_path / RUN_TARGET,
        )
        yield from invocation.stream()

    return close_calls_dbt
