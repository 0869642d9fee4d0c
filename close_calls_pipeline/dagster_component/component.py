"""`CloseCallsComponent`: the whole Close calls pipeline as a Dagster Component.

Add it to any `dg` project with

    dg scaffold defs close_calls_pipeline.CloseCallsComponent close_calls

and configure it in the `defs.yaml` that writes. Its attributes are the settings of
`core/settings.py` (docs/configuration.md lists them). It yields the calls + utterances
multi-asset, outcomes and users, the ingestion asset checks, the freshness policy (when set), the
jobs and schedules, and (with `dbt_marts`) the bundled dbt models as one lineage below the
ingestion assets.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
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
from close_calls_pipeline.core.settings import PipelineSettings, default_of, scaffold_attributes
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
from close_calls_pipeline.dagster_component.maintenance import build_lake_maintenance
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


def _value_or_default(name: str):
    """A value as written; a template that comes out empty (an unset variable) is the setting's
    default, while a literal `null` stays None (for a schedule: none)."""
    default = default_of(PipelineSettings.model_fields[name])

    def resolve(context: ResolutionContext, raw: Any) -> Any:
        if raw is None:
            return None
        value = context.resolve_value(raw)
        return default if value is None or (isinstance(value, str) and not value.strip()) else value

    return resolve


def _attribute(name: str) -> tuple[Any, Any]:
    """The component attribute of setting `name`: its type (with the resolver that reads
    templates) and its default, both from the settings model."""
    info = PipelineSettings.model_fields[name]
    resolve = _api_key if name == "api_key" else _value_or_default(name)
    # A structured setting (personal_data) is a YAML mapping here, its names checked by the model.
    model_type = dict[str, str] if is_dataclass(info.annotation) else info.annotation
    annotation = Annotated[
        Any,
        Resolver(
            resolve,
            model_field_type=model_type,
            inject_before_resolve=False,
            description=info.description,
        ),
    ]
    if info.default_factory is not None:
        return annotation, field(default_factory=info.default_factory)
    return annotation, field(default=info.default)


def attributes_from_settings(cls: type) -> type:
    """Declares one dataclass attribute per field of `PipelineSettings` (apply before
    `@dataclass`): the component's attributes are the settings model's, by construction."""
    annotations = dict(cls.__dict__.get("__annotations__", {}))
    for name in PipelineSettings.model_fields:
        annotations[name], default = _attribute(name)
        setattr(cls, name, default)
    cls.__annotations__ = annotations
    return cls


class CloseCallsScaffolder(Scaffolder):
    """Writes a `defs.yaml` with the settings read from the environment, and every other
    setting commented with its default."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        from_env, commented = scaffold_attributes()
        scaffold_component(request, from_env)
        defs_yaml = request.target_path / "defs.yaml"
        if defs_yaml.exists():
            defs_yaml.write_text(defs_yaml.read_text() + commented)


@scaffold_with(CloseCallsScaffolder)
@dataclass
@attributes_from_settings
class CloseCallsComponent(Component, Resolvable):
    """Close CRM calls (with transcripts) into DuckDB, incrementally by `date_updated`, and the
    call-analytics dbt marts on top.

    Its attributes are the fields of `close_calls_pipeline.core.settings.PipelineSettings` (see
    docs/configuration.md). With no `api_key` (omitted, or an unset / empty environment
    variable) every run talks to the embedded sandbox Close API, started on loopback for the run.
    """

    def __post_init__(self) -> None:
        self._validated()  # a clear error at load, not at run

    def _validated(self) -> PipelineSettings:
        return PipelineSettings(
            **{name: getattr(self, name) for name in PipelineSettings.model_fields}
        )

    def settings(self, project_root: Path) -> PipelineSettings:
        """The attributes as validated settings, the warehouse path made absolute."""
        return self._validated().resolved(project_root)

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return build_definitions(self.settings(context.project_root))


def build_definitions(
    settings: PipelineSettings,
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
        lake_catalog=settings.lake_catalog,
        lake_data_path=settings.lake_data_path,
        close_api=close_api,
        memory_limit=settings.duckdb_memory_limit,
        dbt_memory_limit=settings.dbt_memory_limit,
        lock_wait_seconds=settings.lock_wait_seconds,
        personal_data=settings.personal_data.as_dict(),
        file_mode=settings.file_mode,
    )
    resources: dict[str, Any] = {"close_api": close_api, "duckdb_warehouse": warehouse}
    assets: list[Any] = []
    checks: list[Any] = list(INGESTION_CHECKS)
    columns: dict[str, dict[str, str]] = {}
    if settings.dbt_marts:
        project = dbt_project(config.DBT_PROJECT_DIR, settings.dbt_target_path)
        manifest = load_manifest(prepare_manifest(project, settings.file_mode))
        columns = {
            table: described for table, (_, described) in source_descriptions(manifest).items()
        }
        assets += [
            build_dbt_assets(project, settings.reporting_timezone),
            build_report_asset(settings.reporting_timezone),
        ]
        checks += DBT_CHECKS
        resources["dbt"] = dbt_resource(project)
    assets = build_ingestion_assets(columns, settings) + assets
    # Last: the read-only copy readers open, published once everything above it is written.
    assets.append(build_readonly_copy_asset(deps=[key for a in assets for key in a.keys]))
    jobs, schedules = jobs_and_schedules(settings.cron_schedule, settings.reconcile_cron_schedule)
    if settings.lake is not None:  # a DuckDB file needs no upkeep; a lake's small files do
        maintenance_job, maintenance_schedules = build_lake_maintenance(
            "duckdb_warehouse", retention_days=settings.lake_snapshot_retention_days
        )
        jobs = [*jobs, maintenance_job]
        schedules = [*schedules, *maintenance_schedules]
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
