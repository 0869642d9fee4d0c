"""The bundled dbt project as Dagster assets, one lineage below the ingestion assets.

dbt is handed the warehouse's absolute path and memory limit as `--vars` (profiles.yml reads
them), so nothing writes the process environment. Its artefacts go under the project folder (never
into the installed package, which may be read-only): the manifest in the target path, each run's
in one fixed folder below it, overwritten by each run, so disk use does not grow with the
number of runs.
"""

import fcntl
import importlib.metadata
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.asset_utils import get_asset_check_key_for_test
from packaging import version

from close_calls_pipeline.core import build_plan, changed_row_tests, dbt_launcher, files
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
# Beside the manifest: the hash of those files it was parsed from (build_plan.files_digest).
_MANIFEST_SOURCES = "manifest.sources"
RUN_TARGET = "dagster"  # below the target path: artefacts of the latest run only


def dbt_project(project_dir: Path, target_path: Path) -> DbtProject:
    """The bundled dbt project, its artefacts in `target_path` (absolute)."""
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target_path=target_path)


class CloseDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, without two things it does in every run that this project never
    uses, about 3 s of each run that builds: running `dbt --version` (a start of dbt's Python:
    the dbt it runs is the one installed beside this Python, whose version is that of the
    dbt-core package installed here; a dbt found elsewhere is asked, as dagster-dbt
    does), and loading dbt's profile and adapter into the run's process (only its
    `fetch_row_counts` and `fetch_column_metadata` use it)."""

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        real_dbt = Path(dbt_launcher.real_dbt_executable())
        if real_dbt.parent == Path(sys.executable).parent:
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """dbt runs through `close-calls-dbt`, which dies with the run that started it."""
    return CloseDbtCliResource(
        project_dir=project,
        dbt_executable=dbt_launcher.launcher_executable(dbt_launcher.real_dbt_executable()),
    )


def prepare_manifest(project: DbtProject, file_mode: str = files.PRIVATE) -> Path:
    """`target/manifest.json`, made by `dbt parse` only when it is missing or was parsed from
    other project files (their content, kept beside it: `_MANIFEST_SOURCES`; not their times,
    which an upgrade of the package can leave older than the manifest, and a deleted model does
    not change): loading the definitions runs no subprocess when the manifest is current. A
    file lock keeps concurrent loaders (code server, run workers) from parsing twice. The
    folders it creates (the project's `.close_calls/`) have the `file_mode`'s modes."""
    manifest = project.manifest_path
    parsed_from = manifest.with_name(_MANIFEST_SOURCES)
    sources = build_plan.files_digest(project.project_dir, _DBT_SOURCES)

    def stale() -> bool:
        try:
            return not manifest.exists() or parsed_from.read_text() != sources
        except OSError:
            return True

    if stale():
        files.private_dir(manifest.parent, file_mode)
        with (
            files.restrictive_umask(file_mode),
            open(manifest.parent / ".prepare.lock", "w") as lock,
        ):
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stale():
                log.info("preparing the dbt manifest (dbt parse) at %s", manifest)
                dbt_resource(project).cli(
                    ["parse", "--quiet"], target_path=project.target_path
                ).wait()
                parsed_from.write_text(sources)
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


def _model_name(unique_id: str | None) -> str:
    return (unique_id or "").rsplit(".", 1)[-1]


def _ref_name(text: str) -> str:
    """`stg_close__calls` from `ref('stg_close__calls')`."""
    return text.split("(", 1)[-1].rstrip(")").strip("'\" ") if "(" in text else text


def test_description(test_props: Mapping[str, Any]) -> str:
    """What a dbt test checks: its own `description:` in the dbt YAML, else a sentence made from
    its generic test and arguments (so every check in the UI says what it guards)."""
    written = (test_props.get("description") or "").strip()
    if written:
        return written
    metadata = test_props.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    model = _model_name(test_props.get("attached_node"))
    column = test_props.get("column_name") or kwargs.get("column_name")
    where = f"`{column}` of `{model}`"
    kind = metadata.get("name")
    if kind == "not_null":
        return f"{where} is never null."
    if kind == "unique":
        return f"{where} is unique: one row per value."
    if kind == "accepted_values":
        return (
            f"{where} only holds the values `known_enum_values` (dbt_project.yml) lists; warns "
            "on a value Close started sending, which the marts keep as sent."
        )
    if kind == "relationships":
        target = _ref_name(str(kwargs.get("to")))
        return f"Every {where} exists as `{kwargs.get('field')}` in `{target}`."
    if kind == "unique_combination_of_columns":
        columns = ", ".join(kwargs.get("combination_of_columns") or [])
        return f"`{model}` has one row per ({columns})."
    return f"dbt test `{test_props.get('name')}`."


def expected_warning(test_props: Mapping[str, Any]) -> str | None:
    """Why a dbt test's warning is expected (`config.meta.expected_warning` in the dbt YAML)."""
    meta = {**(test_props.get("meta") or {}), **(test_props.get("config", {}).get("meta") or {})}
    reason = meta.get("expected_warning")
    return str(reason).strip() if reason else None


class CloseDbtTranslator(DagsterDbtTranslator):
    """dbt models in the `analytics` group; the `close` source tables are the ingestion assets;
    every dbt test is an asset check with a description."""

    def get_asset_check_spec(
        self,
        asset_spec: AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test_props = manifest["nodes"][unique_id]
        description = test_description(test_props)
        if expected_warning(test_props):
            description += " Expected to report calls: see the result's `expected_reason`."
        return spec._replace(description=description)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if (
            dbt_resource_props["resource_type"] == "source"
            and dbt_resource_props["source_name"] == "close"
        ):
            return AssetKey(["close", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return ANALYTICS_GROUP


def _expected_warnings(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Test name -> why its warning is expected."""
    return {
        props["name"]: reason
        for props in manifest.get("nodes", {}).values()
        if props.get("resource_type") == "test" and (reason := expected_warning(props))
    }


def _as_expected(event: Any, expected: Mapping[str, str]) -> Any:
    """A warning the project expects is not a failure: it passes, says so (`expected: true` and
    the reason) and keeps dbt's count of rows. Dagster's UI labels every result that did not
    pass "Failed", whatever its severity, so a WARN would read as a broken run."""
    if not isinstance(event, AssetCheckResult) or event.check_name not in expected:
        return event
    return event._replace(
        passed=True,
        description=f"Expected: {expected[event.check_name]}",
        metadata={
            **(event.metadata or {}),
            "expected": True,
            "expected_reason": expected[event.check_name],
            "dbt_outcome": "pass" if event.passed else "warn",
        },
    )


class DbtBuildConfig(Config):
    """How the `dbt_build` step builds (the CLI's `close-calls run --full-refresh`)."""

    full_refresh: bool = False  # rebuild every model from all calls, whatever changed


def build_dbt_assets(project: DbtProject, reporting_timezone: str) -> AssetsDefinition:
    """`dbt build` of the bundled project, its tests as asset checks."""
    translator = CloseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
    manifest = load_manifest(prepare_manifest(project))
    expected = _expected_warnings(manifest)

    @dbt_assets(
        name="dbt_build",
        manifest=manifest,
        project=project,
        dagster_dbt_translator=translator,
        pool=WAREHOUSE_POOL,
    )
    def dbt_build(
        context: AssetExecutionContext,
        dbt: DbtCliResource,
        duckdb_warehouse: WarehouseResource,
        config: DbtBuildConfig,
    ):
        """`dbt build`: the staging views and the analytics marts, with their tests as checks;
        incremental (the calls changed since the last build) unless a full refresh is needed,
        and nothing at all when nothing changed (core/build_plan.py)."""
        dbt_vars = dbt_launcher.dbt_vars(
            duckdb_warehouse.path,
            duckdb_warehouse.dbt_memory_limit,
            reporting_timezone,
            lake=duckdb_warehouse.lake,
        )
        with duckdb_warehouse.connect() as con:
            fingerprint = build_plan.fingerprint(con, project.project_dir, json.loads(dbt_vars))
            plan = build_plan.plan(con, fingerprint, full_refresh=config.full_refresh)
            build_plan.request(con, plan)
        if plan.mode == build_plan.UNCHANGED:
            log.info("dbt build: %s: no model built; the report and the read-only copy are kept",
                     plan.reason)  # fmt: skip
            return  # no model is materialized, no test runs
        log.info("dbt build: %s (%s)", plan.mode, plan.reason)
        # dbt opens the file itself and does not wait for it: wait here (bounded, logged) while
        # another process (a notebook) holds it.
        duckdb_warehouse.wait_until_writable()
        run_target = project.target_path / RUN_TARGET
        files.private_dir(run_target, duckdb_warehouse.file_mode)
        tests = None
        if plan.tests_after_dbt:
            tests = _compiled_tests(dbt, project, plan.fingerprint, dbt_vars, run_target)
        invocation = dbt.cli(
            [*plan.dbt_command, "--vars", dbt_vars], context=context, target_path=run_target
        )
        events = invocation.stream()
        if tests is not None:
            events = _with_views_in_order(events, context, manifest, translator)
        started = time.perf_counter()
        for event in events:
            yield _as_expected(event, expected)
        if tests is not None:
            log.info("dbt %s: done in %.1f s", plan.dbt_command[0], time.perf_counter() - started)
            checks = _selected_checks(context, tests, manifest, translator, project)
            with duckdb_warehouse.connect() as con:
                run = changed_row_tests.run_tests(con, checks)
            log.info("%s", changed_row_tests.summary(run))
            full_builds_only = set(context.selected_asset_check_keys) - set(checks.values())
            if full_builds_only:  # Dagster lists them as expected outputs not yielded
                log.info("not run after an incremental build, run by full builds (their dbt meta "
                         "full_builds_only says why): %s",
                         ", ".join(sorted(key.name for key in full_builds_only)))  # fmt: skip
            results = run.results
            for result in results:
                yield _as_expected(_check_result(checks[result.test], result), expected)
            failures = changed_row_tests.failed(results)
            if failures:
                names = ", ".join(result.test.name for result in failures)
                raise DbtTestsFailed(f"dbt tests failed: {names}")

    return dbt_build


class DbtTestsFailed(Exception):
    """An error-severity data test failed after an incremental build (its models are built; the
    next build is a full refresh)."""


def _compiled_tests(
    dbt: DbtCliResource, project: DbtProject, fingerprint: str, dbt_vars: str, run_target: Path
) -> list[changed_row_tests.CompiledTest]:
    """The project's data tests compiled in their changed-rows form, for this fingerprint (a
    `dbt compile` once per fingerprint: core/changed_row_tests.py)."""

    def compile_manifest() -> Mapping[str, Any]:
        started = time.perf_counter()
        compiled = dbt.cli(
            [*changed_row_tests.COMPILE_ARGS, "--vars", dbt_vars],
            target_path=run_target / changed_row_tests.COMPILE_FOLDER,
        ).wait()
        log.info("compiled the dbt tests for incremental builds in %.1f s (once per version "
                 "of the project)", time.perf_counter() - started)  # fmt: skip
        return compiled.get_artifact("manifest.json")

    path = run_target / changed_row_tests.CACHE_FILE
    return changed_row_tests.compiled_tests(path, fingerprint, compile_manifest)


def _with_views_in_order(
    events: Iterable[Any],
    context: AssetExecutionContext,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
) -> Iterator[Any]:
    """dbt's events of an incremental build, with the views it did not re-create reported
    materialized too: their SQL is unchanged and they read the tables it built, so their data is
    as new as those tables'. Dagster wants a step's assets in dependency order: each view comes
    before the first table below it, the rest after the last table."""
    nodes = manifest["nodes"]
    views = {
        unique_id: translator.get_asset_key(props)
        for unique_id, props in nodes.items()
        if props["resource_type"] == "model" and props["config"].get("materialized") == "view"
    }
    pending = [uid for uid in _models_in_dependency_order(nodes) if uid in views]
    pending = [uid for uid in pending if views[uid] in context.selected_asset_keys]

    def views_above(unique_id: str | None) -> Iterator[MaterializeResult]:
        above = _ancestors(nodes, unique_id) if unique_id else set(pending)
        for view in [uid for uid in pending if uid in above]:
            pending.remove(view)
            yield MaterializeResult(
                asset_key=views[view],
                metadata={
                    "unique_id": view,
                    "materialization": "view over the tables this build wrote (not re-created: "
                    "its SQL is unchanged)",
                },
            )

    for event in events:
        if isinstance(event, Output):
            yield from views_above(str(event.metadata["unique_id"].value))
        yield event
    yield from views_above(None)


def _models_in_dependency_order(nodes: Mapping[str, Any]) -> list[str]:
    done: dict[str, None] = {}

    def visit(unique_id: str) -> None:
        if unique_id in done or unique_id not in nodes:
            return
        for parent in nodes[unique_id]["depends_on"]["nodes"]:
            visit(parent)
        done[unique_id] = None

    for unique_id in sorted(nodes):
        if nodes[unique_id]["resource_type"] == "model":
            visit(unique_id)
    return [uid for uid in done if nodes[uid]["resource_type"] == "model"]


def _ancestors(nodes: Mapping[str, Any], unique_id: str) -> set[str]:
    found: set[str] = set()
    pending = list(nodes.get(unique_id, {}).get("depends_on", {}).get("nodes", []))
    while pending:
        parent = pending.pop()
        if parent not in found and parent in nodes:
            found.add(parent)
            pending.extend(nodes[parent]["depends_on"]["nodes"])
    return found


def _selected_checks(
    context: AssetExecutionContext,
    tests: list[changed_row_tests.CompiledTest],
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    project: DbtProject,
) -> dict[changed_row_tests.CompiledTest, AssetCheckKey]:
    """The tests of the checks this run selected, with their keys (dagster-dbt's)."""
    selected = set(context.selected_asset_check_keys)
    checks = {}
    for test in tests:
        key = get_asset_check_key_for_test(manifest, translator, test.unique_id, project)
        if key is not None and key in selected:
            checks[test] = key
    return checks


def _check_result(key: AssetCheckKey, result: changed_row_tests.TestResult) -> AssetCheckResult:
    """A test's result as the asset check dagster-dbt makes of it (same key, severity and failed
    row count), saying which rows it read."""
    return AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=result.status == changed_row_tests.PASS,
        severity=(
            AssetCheckSeverity.WARN
            if result.status == changed_row_tests.WARN
            else AssetCheckSeverity.ERROR
        ),
        metadata={
            "unique_id": result.test.unique_id,
            "status": result.status,
            "rows_tested": "changed since the last complete build",
            "Execution Duration": round(result.seconds, 3),
            **({} if result.judged_with == 1 else
               {"judged_with": f"{result.judged_with} tests of the same rows, in one query"}),
            **({} if result.failures is None else
               {"dagster_dbt/failed_row_count": int(result.failures)}),
            **({} if result.message is None else {"message": result.message}),
        },
    )  # fmt: skip
