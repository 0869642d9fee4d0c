"""`CloseCallsComponent`: the whole Close calls pipeline as a Dagster Component.

Add it to any `dg` project with

    dg scaffold defs close_calls_pipeline.CloseCallsComponent close_calls

and configure it in the `defs.yaml` that writes (see the scaffolder below for every attribute).
It yields the calls + utterances multi-asset, outcomes and users, the ingestion asset checks,
the freshness policy, the jobs and schedules, and (with `dbt_marts`) the bundled dbt models as
one lineage below the ingestion assets.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from dagster import (
    Component,
    ComponentLoadContext,
    Definitions,
    EnvVar,
    LoggerDefinition,
    ResolutionContext,
    Resolvable,
    Resolver,
    Scaffolder,
    ScaffoldRequest,
    in_process_executor,
    scaffold_with,
)
from dagster.components.component_scaffolding import scaffold_component

from close_calls_pipeline.core import config
from close_calls_pipeline.dagster_component.assets import build_ingestion_assets
from close_calls_pipeline.dagster_component.checks import DBT_CHECKS, INGESTION_CHECKS
from close_calls_pipeline.dagster_component.dbt import (
    build_dbt_assets,
    dbt_project,
    dbt_resource,
    load_manifest,
    prepare_manifest,
    source_descriptions,
)
from close_calls_pipeline.dagster_component.jobs import jobs_and_schedules
from close_calls_pipeline.dagster_component.publish import build_readonly_copy_asset
from close_calls_pipeline.dagster_component.report import build_report_asset
from close_calls_pipeline.dagster_component.resources import (
    CloseApiResource,
    WarehouseResource,
    close_api_resource,
)

# `{{ env.NAME }}` or `{{ env('NAME') }}`, the whole value.
_ENV_TEMPLATE = re.compile(r"""^\s*\{\{\s*env(?:\.(\w+)|\(\s*['"](\w+)['"]\s*\))\s*\}\}\s*$""")


def _api_key(context: ResolutionContext, raw: str | None) -> str | None:
    """An `{{ env.X }}` template becomes `EnvVar("X")`: resolved at launch, so the key is never
    part of the definitions, the UI or run config. Unset or empty: None (the sandbox)."""
    if raw is None:
        return None
    match = _ENV_TEMPLATE.match(str(raw))
    if match:
        name = match.group(1) or match.group(2)
        return EnvVar(name) if EnvVar(name).get_value() else None
    return context.resolve_value(raw, as_type=str) or None


def _optional_text(context: ResolutionContext, raw: str | None) -> str | None:
    """A templated string whose empty or unset value means "the default"."""
    value = context.resolve_value(raw) if raw is not None else None
    return str(value).strip() or None if value is not None else None


OptionalText = Annotated[str | None, Resolver(_optional_text, model_field_type=str)]


def _lock_wait(context: ResolutionContext, raw: str | float | None) -> float:
    value = context.resolve_value(raw) if raw is not None else None
    return config.parse_lock_wait_seconds(value if value not in ("None",) else None)


def _delete_share(context: ResolutionContext, raw: str | float | None) -> float:
    return config.parse_delete_share(context.resolve_value(raw) if raw is not None else None)


@dataclass
class CloseCallsPipelineSettings:
    """What the component's attributes say, with every default filled in."""

    duckdb_path: Path
    api_key: str | None
    base_url: str | None  # None: Close's (with a key); refused without one
    workers: int
    backfill_start: str | None
    cron_schedule: str | None
    reconcile_cron_schedule: str | None
    dbt_marts: bool
    dbt_project_dir: Path
    duckdb_memory_limit: str
    dbt_memory_limit: str
    lock_wait_seconds: float
    max_reconcile_delete_share: float
    extra_call_fields: list[str]
    sandbox_calls: int
    sandbox_seed: int


class CloseCallsScaffolder(Scaffolder):
    """Writes a `defs.yaml` with every attribute, the optional ones commented."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        scaffold_component(
            request,
            {
                "duckdb_path": "{{ env.CLOSE_CALLS_DUCKDB }}",
                "api_key": "{{ env.CLOSE_API_KEY }}",
                "base_url": "{{ env.CLOSE_API_BASE_URL }}",
            },
        )
        defs_yaml = request.target_path / "defs.yaml"
        if defs_yaml.exists():
            defs_yaml.write_text(defs_yaml.read_text() + _OPTIONAL_ATTRIBUTES)


_OPTIONAL_ATTRIBUTES = f"""\
  # Optional, with their defaults:
  # workers: {config.DEFAULT_WORKERS}                         # concurrent requests
  # backfill_start: 2024-01-01         # the first walk's start (default: all history)
  # cron_schedule: "{config.DEFAULT_CRON_SCHEDULE}"           # null: no schedule
  # reconcile_cron_schedule: "{config.DEFAULT_RECONCILE_CRON_SCHEDULE}"  # null: no weekly reconcile
  # dbt_marts: true                    # the bundled dbt models as assets
  # duckdb_memory_limit: {config.DEFAULT_DUCKDB_MEMORY_LIMIT}         # the sync's connections
  # dbt_memory_limit: {config.DEFAULT_DBT_MEMORY_LIMIT}              # dbt build's
  # extra_call_fields: []              # e.g. [custom.cf_xxx]
  # lock_wait_seconds: {config.DEFAULT_LOCK_WAIT_SECONDS:g}             # wait for a process holding the file
  # max_reconcile_delete_share: {config.DEFAULT_MAX_RECONCILE_DELETE_SHARE:g}   # a reconcile deleting more stops
"""


@scaffold_with(CloseCallsScaffolder)
@dataclass
class CloseCallsComponent(Component, Resolvable):
    """Close CRM calls (with transcripts) into DuckDB, incrementally by `date_updated`, and the
    call-analytics dbt marts on top.

    With no `api_key` (omitted, or an unset / empty environment variable) every run talks to the
    embedded sandbox Close API, started on loopback for the run, and writes its own warehouse
    (data/sandbox.duckdb). A warehouse belongs to the organization of its first run: a run whose
    API answers for another one fails before writing anything.
    """

    duckdb_path: OptionalText = None
    """The DuckDB warehouse file; relative to the project root. Default data/close_calls.duckdb,
    or data/sandbox.duckdb without an api_key."""
    api_key: Annotated[
        str | None, Resolver(_api_key, model_field_type=str, inject_before_resolve=False)
    ] = None
    """Close API key, as `{{ env.CLOSE_API_KEY }}` (kept secret). Empty: the sandbox."""
    base_url: OptionalText = None
    """Close API base URL. Default https://api.close.com/api/v1. Refused without an api_key."""
    workers: int = config.DEFAULT_WORKERS
    """Concurrent requests."""
    backfill_start: OptionalText = None
    """ISO date where the first walk starts (not in the future). Default: all history."""
    cron_schedule: str | None = config.DEFAULT_CRON_SCHEDULE
    """Cron (UTC) of the incremental sync + dbt build; null: no schedule. Starts stopped."""
    reconcile_cron_schedule: str | None = config.DEFAULT_RECONCILE_CRON_SCHEDULE
    """Cron (UTC) of the full reconcile that repairs drift; null: none. Starts running."""
    dbt_marts: bool = True
    """The bundled dbt project's models (staging, intermediate, marts) as assets."""
    duckdb_memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT
    """DuckDB memory limit of the sync's and checks' connections; DuckDB spills beyond it."""
    dbt_memory_limit: str = config.DEFAULT_DBT_MEMORY_LIMIT
    """DuckDB memory limit of `dbt build`; DuckDB spills beyond it."""
    extra_call_fields: list[str] = field(default_factory=list)
    """Call fields to request beyond the documented ones, e.g. `custom.cf_...`."""
    lock_wait_seconds: Annotated[
        float,
        Resolver(_lock_wait, model_field_type=str | float | None, inject_before_resolve=False),
    ] = config.DEFAULT_LOCK_WAIT_SECONDS
    """How long a run waits for another process to let go of the warehouse file, then fails
    naming it (a notebook should open the read-only copy instead)."""
    max_reconcile_delete_share: Annotated[
        float,
        Resolver(_delete_share, model_field_type=str | float | None, inject_before_resolve=False),
    ] = config.DEFAULT_MAX_RECONCILE_DELETE_SHARE
    """A reconcile that would soft-delete more than this share of the live calls stops before
    deleting anything (run config `allow_mass_delete: true` lets one go ahead)."""
    sandbox_calls: int = config.SANDBOX_CALLS
    """Calls in the sandbox's seeded history (only without an api_key)."""
    sandbox_seed: int = config.SANDBOX_SEED
    """Seed of the sandbox's data (only without an api_key)."""

    def __post_init__(self) -> None:
        config.parse_backfill_start(self.backfill_start)  # a clear error at load, not at run

    def settings(self, project_root: Path) -> CloseCallsPipelineSettings:
        return CloseCallsPipelineSettings(
            duckdb_path=config.resolve_path(
                self.duckdb_path,
                project_root,
                config.default_duckdb_relative_path(has_api_key=bool(self.api_key)),
            ),
            api_key=self.api_key,
            base_url=self.base_url,
            workers=self.workers,
            backfill_start=self.backfill_start,
            cron_schedule=self.cron_schedule,
            reconcile_cron_schedule=self.reconcile_cron_schedule,
            dbt_marts=self.dbt_marts,
            dbt_project_dir=config.DBT_PROJECT_DIR,
            duckdb_memory_limit=self.duckdb_memory_limit,
            dbt_memory_limit=self.dbt_memory_limit,
            lock_wait_seconds=self.lock_wait_seconds,
            max_reconcile_delete_share=self.max_reconcile_delete_share,
            extra_call_fields=list(self.extra_call_fields),
            sandbox_calls=self.sandbox_calls,
            sandbox_seed=self.sandbox_seed,
        )

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return build_definitions(self.settings(context.project_root))


def build_definitions(
    settings: CloseCallsPipelineSettings,
    *,
    close_api: CloseApiResource | None = None,
    loggers: Mapping[str, LoggerDefinition] | None = None,
) -> Definitions:
    """The pipeline's definitions; tests may pass their own Close API resource and loggers."""
    close_api = close_api or close_api_resource(
        settings.api_key,
        base_url=settings.base_url,
        workers=settings.workers,
        extra_call_fields=settings.extra_call_fields,
        sandbox_calls=settings.sandbox_calls,
        sandbox_seed=settings.sandbox_seed,
    )
    warehouse = WarehouseResource(
        path=str(settings.duckdb_path),
        close_api=close_api,
        memory_limit=settings.duckdb_memory_limit,
        dbt_memory_limit=settings.dbt_memory_limit,
        lock_wait_seconds=settings.lock_wait_seconds,
    )
    resources: dict[str, Any] = {"close_api": close_api, "duckdb_warehouse": warehouse}
    assets: list[Any] = []
    checks: list[Any] = list(INGESTION_CHECKS)
    columns: dict[str, dict[str, str]] = {}
    if settings.dbt_marts:
        project = dbt_project(settings.dbt_project_dir)
        manifest = load_manifest(prepare_manifest(project))
        columns = {
            table: described for table, (_, described) in source_descriptions(manifest).items()
        }
        assets += [build_dbt_assets(project), build_report_asset()]
        checks += DBT_CHECKS
        resources["dbt"] = dbt_resource(project)
    assets = (
        build_ingestion_assets(
            columns, settings.backfill_start, settings.max_reconcile_delete_share
        )
        + assets
    )
    # Last: the read-only copy readers open, published once everything above it is written.
    assets.append(build_readonly_copy_asset(deps=[key for a in assets for key in a.keys]))
    jobs, schedules = jobs_and_schedules(settings.cron_schedule, settings.reconcile_cron_schedule)
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        resources=resources,
        # DuckDB has one writer: one step at a time, ingestion before dbt; and one Close API
        # resource (one sandbox) for the whole run.
        executor=in_process_executor,
        loggers=loggers,
    )
