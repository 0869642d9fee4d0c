"""The pipeline's settings: each one's name, type, default, environment variable and meaning,
declared once, in `PipelineSettings`.

Everything else is derived from it: the component's attributes (`dagster_component/component.py`),
the commented attributes `dg scaffold` writes, `.env.example` and the table in
`docs/configuration.md` (regenerate both with `python -m close_calls_pipeline.core.settings`;
a test fails when they differ from the model). To add a setting, add one field here with
`setting(...)`; its default, when it is a product decision, goes in `core/config.py`.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from dataclasses import is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from close_calls_pipeline.core import config, files
from close_calls_pipeline.core import lake as lake_mode
from close_calls_pipeline.core.lake import Lake
from close_calls_pipeline.core.personal_data import HASH_KEY_ENV, PersonalDataPolicy


def setting(
    default: Any,
    description: str,
    *,
    env: str | None = None,
    example: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field. `env`: the environment variable the project's `defs.yaml` and
    `.env.example` read it from; `example`: the value the scaffolded `defs.yaml` shows in a
    comment (default: the default)."""
    extra = {key: value for key, value in (("env", env), ("example", example)) if value}
    kwargs: dict[str, Any] = {"default_factory": list} if default == [] else {"default": default}
    return Field(description=description, json_schema_extra=extra or None, **kwargs, **constraints)


def _text_kept_as_is(value: Any) -> str | None:
    """A string or None, not copied: Dagster's `EnvVar` (a str) must stay one, so the key is read
    when a run starts and never becomes part of the definitions."""
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"expected text, got {type(value).__name__}")


Secret = Annotated[str | None, PlainValidator(_text_kept_as_is)]

# Hours the Dagster UI shows exactly (it rounds other durations: 90 minutes reads "2 hours").
_EXACT_UI_HOURS = frozenset(range(1, 22)) | {24 * days for days in range(1, 26)}


class PipelineSettings(BaseModel):
    """Every setting of the pipeline, with its default."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")
    # The project folder the settings were resolved against (see `resolved`): not a setting.
    _project_root: Path | None = PrivateAttr(default=None)

    duckdb_path: Path | None = setting(
        None,
        "The DuckDB warehouse file; a relative path is resolved against the project's root. "
        f"Unset: `{config.DEFAULT_DUCKDB_RELATIVE_PATH}` with an api_key, "
        f"`{config.DEFAULT_SANDBOX_DUCKDB_RELATIVE_PATH}` without (the sandbox never writes into "
        "a live warehouse). Notebooks open the read-only copy beside it, `<name>_readonly.duckdb`.",
        env=config.CLOSE_CALLS_DUCKDB_ENV,
    )
    lake_catalog: str | None = setting(
        None,
        "Store the warehouse in a DuckLake instead of the DuckDB file (docs/lake.md): its catalog "
        "as DuckLake's ATTACH takes it after `ducklake:`, e.g. `sqlite:/srv/calls/catalog.sqlite` "
        "or `postgres:dbname=calls host=db.internal` (no password here: PGPASSWORD or a DuckDB "
        "secret). Needs `lake_data_path`. Unset: the DuckDB file.",
        env=config.CLOSE_CALLS_LAKE_CATALOG_ENV,
    )
    lake_data_path: str | None = setting(
        None,
        "Where the DuckLake keeps its Parquet files: a folder (a relative one is resolved against "
        "the project's root) or `s3://bucket/prefix`. Needs `lake_catalog`.",
        env=config.CLOSE_CALLS_LAKE_DATA_PATH_ENV,
    )
    lake_snapshot_retention_days: int = setting(
        config.DEFAULT_LAKE_SNAPSHOT_RETENTION_DAYS,
        "DuckLake only: days a snapshot stays readable (time travel) before maintenance expires "
        "it and removes the files no remaining snapshot needs.",
        env=config.CLOSE_CALLS_LAKE_SNAPSHOT_RETENTION_ENV,
        ge=1,
    )
    api_key: Secret = setting(
        None,
        "Close API key (Close: Settings, Developer, API Keys), as `{{ env.CLOSE_API_KEY }}`: read "
        "when a run starts, never shown. Unset or empty: every run uses the embedded sandbox "
        "Close API.",
        env=config.CLOSE_API_KEY_ENV,
        repr=False,  # never in a printed or logged settings object
    )
    base_url: str | None = setting(
        None,
        f"Close API base URL; unset: {config.DEFAULT_BASE_URL}. Set without an api_key, it is "
        "refused (never a silent switch to the sandbox). Plain `http://` is refused unless the host "
        "is loopback.",
        env=config.CLOSE_API_BASE_URL_ENV,
    )
    workers: int = setting(config.DEFAULT_WORKERS, "Concurrent requests to Close.", ge=1)
    backfill_start: str | None = setting(
        None,
        "ISO date (YYYY-MM-DD, UTC) where the first walk starts, not in the future. "
        "Unset: all history.",
        example="2024-01-01",
    )
    event_overlap_minutes: float = setting(
        config.DEFAULT_EVENT_OVERLAP_MINUTES,
        "How far before the high-water mark an incremental run reads the Event Log again, "
        "to catch events Close publishes late.",
        ge=0,
        le=config.MAX_EVENT_OVERLAP_MINUTES,
    )
    cron_schedule: str | None = setting(
        config.DEFAULT_CRON_SCHEDULE,
        "Cron (UTC) of the incremental sync and dbt build; null: no schedule. Starts stopped.",
    )
    reconcile_cron_schedule: str | None = setting(
        config.DEFAULT_RECONCILE_CRON_SCHEDULE,
        "Cron (UTC) of the full reconcile that repairs drift; null: none. Starts running.",
    )
    freshness_fail_after_hours: int | None = setting(
        config.DEFAULT_FRESHNESS_FAIL_AFTER_HOURS,
        "close/calls is overdue (freshness fails) this many hours after its last sync. "
        "Unset: no freshness policy (the hourly schedule starts stopped). 1 to 21, or whole "
        "days (24, 48, ...) up to 25 days, the durations the Dagster UI shows exactly.",
        example="2",
    )
    freshness_warn_after_hours: int | None = setting(
        config.DEFAULT_FRESHNESS_WARN_AFTER_HOURS,
        "Freshness warns this many hours after the last sync (fewer than the fail hours); "
        "unset: no warning before it fails.",
        example="1",
    )
    dbt_marts: bool = setting(
        True, "The bundled dbt project's models (staging, intermediate, marts) as assets."
    )
    reporting_timezone: str = setting(
        config.DEFAULT_REPORTING_TIMEZONE,
        "IANA time zone of `call_date`, every daily figure and the report's weekday x hour.",
        example="America/New_York",
    )
    duckdb_memory_limit: str = setting(
        config.DEFAULT_DUCKDB_MEMORY_LIMIT,
        "DuckDB memory limit of the sync's and checks' connections; DuckDB spills beyond it.",
    )
    dbt_memory_limit: str = setting(
        config.DEFAULT_DBT_MEMORY_LIMIT,
        "DuckDB memory limit of `dbt build`; DuckDB spills beyond it.",
    )
    lock_wait_seconds: float = setting(
        config.DEFAULT_LOCK_WAIT_SECONDS,
        "How long a run waits, over all its steps, for another process (a notebook, the "
        "DuckDB CLI) to let go of the warehouse file, then fails naming its PID.",
        env=config.CLOSE_CALLS_LOCK_WAIT_ENV,
        ge=0,
        allow_inf_nan=False,
    )
    extra_call_fields: list[str] = setting(
        [],
        "Call fields to request beyond the documented ones, e.g. `custom.cf_...`.",
        example="[custom.cf_xxx]",
    )
    max_reconcile_delete_share: float = setting(
        config.DEFAULT_MAX_RECONCILE_DELETE_SHARE,
        "A reconcile that would soft-delete more than this share of the live calls stops before "
        "deleting anything (likelier a wrong key, organization or API fault than real deletes); "
        "run config `allow_mass_delete: true` or `close-calls run --allow-mass-delete` lets one "
        "go ahead.",
        ge=0,
        le=1,
    )
    personal_data: PersonalDataPolicy = setting(
        PersonalDataPolicy(),
        "What the warehouse keeps of calls' personal data (docs/privacy.md), per category: "
        "`phone_numbers: keep | hash | drop`; `notes`, `transcript_text`, `summaries`, "
        "`recording_urls: keep | drop`; unnamed ones keep. `hash` is a keyed HMAC-SHA256 of the "
        f"E.164 number, its key read from `{HASH_KEY_ENV}` when a run starts (never stored). "
        "A stricter policy rewrites the stored rows on the next run.",
        example="{phone_numbers: hash, notes: drop, transcript_text: drop}",
    )
    file_mode: Literal["private", "group"] = setting(
        files.PRIVATE,
        "Modes of the files and folders the pipeline creates (warehouse, read-only copy, report, "
        "dbt's files, the Dagster home): `private` owner-only (0600 / 0700), `group` shared with "
        "the owner's group (0640 / 0750).",
    )
    sandbox_calls: int = setting(
        config.SANDBOX_CALLS,
        "Calls in the sandbox's sliding window (only without an api_key).",
        ge=1,
    )
    sandbox_seed: int = setting(
        config.SANDBOX_SEED, "Seed of the sandbox's data (only without an api_key)."
    )

    @field_validator("backfill_start", mode="before")
    @classmethod
    def _backfill_start(cls, value: Any) -> str | None:
        text = str(value).strip() if value is not None else ""
        config.parse_backfill_start(text)  # refused before anything runs
        return text or None

    @field_validator("personal_data", mode="before")
    @classmethod
    def _personal_data(cls, value: Any) -> PersonalDataPolicy:
        """A mapping of categories (unknown names and choices refused), or a policy."""
        if isinstance(value, PersonalDataPolicy):
            return value
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping of categories, got {type(value).__name__}")
        return PersonalDataPolicy.of(value)

    @field_validator("reporting_timezone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value

    @field_validator("freshness_fail_after_hours", "freshness_warn_after_hours")
    @classmethod
    def _exact_in_the_ui(cls, value: int | None) -> int | None:
        if value is not None and value not in _EXACT_UI_HOURS:
            raise ValueError(
                "must be 1 to 21 hours, or whole days (24, 48, ...) up to 600 hours: "
                f"the Dagster UI rounds other durations, got {value}"
            )
        return value

    @field_validator("lake_catalog", "lake_data_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> str | None:
        text = str(value).strip() if value is not None else ""
        return text or None

    @field_validator("lake_catalog")
    @classmethod
    def _no_password_in_catalog(cls, value: str | None) -> str | None:
        """Settings are shown (Dagster's UI, run config, logs): a password never goes in one."""
        if value and any(w.lower().startswith("password=") for w in value.split()):
            raise ValueError(
                "holds a password: leave it out and set PGPASSWORD (or a DuckDB secret) in the "
                "environment of every process that opens the lake"
            )
        return value

    @model_validator(mode="after")
    def _lake_needs_both(self) -> PipelineSettings:
        if bool(self.lake_catalog) != bool(self.lake_data_path):
            missing, given = (
                ("lake_data_path", "lake_catalog")
                if self.lake_catalog
                else ("lake_catalog", "lake_data_path")
            )
            raise ValueError(
                f"{missing} is not set: a DuckLake needs both lake_catalog and lake_data_path "
                f"({given} is set); set {missing}, or unset {given} to use the DuckDB file"
            )
        return self

    @model_validator(mode="after")
    def _warn_before_fail(self) -> PipelineSettings:
        fail, warn = self.freshness_fail_after_hours, self.freshness_warn_after_hours
        if warn is not None and (fail is None or warn >= fail):
            raise ValueError(
                "freshness_warn_after_hours needs freshness_fail_after_hours, and must be fewer"
            )
        return self

    @model_validator(mode="after")
    def _lake_whole(self) -> PipelineSettings:
        if bool(self.lake_catalog) != bool(self.lake_data_path):
            raise ValueError("lake_catalog and lake_data_path are set together, or neither")
        return self

    def resolved(self, project_root: Path) -> PipelineSettings:
        """A copy whose warehouse path is absolute (relative ones against `project_root`; unset:
        the live or the sandbox default): Dagster and dbt are always handed the same path."""
        default = config.default_duckdb_relative_path(has_api_key=bool(self.api_key))
        path = config.resolve_path(self.duckdb_path, project_root, default)
        update: dict[str, Any] = {"duckdb_path": path}
        if self.lake is not None:
            update["lake_catalog"] = _catalog_resolved(self.lake_catalog, project_root)
            update["lake_data_path"] = _data_path_resolved(self.lake_data_path, project_root)
        copy = self.model_copy(update=update)
        copy._project_root = Path(project_root).resolve()
        return copy

    def updated(self, **changes: Any) -> PipelineSettings:
        """A copy with `changes`, validated as a whole (the lake settings go in pairs) and
        resolved against the same project folder."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        try:
            settings = PipelineSettings(**{**values, **changes})
        except ValidationError as error:  # its own message would repeat every value given
            raise ValueError("; ".join(_named(e, {}) for e in error.errors())) from None
        return settings if self._project_root is None else settings.resolved(self._project_root)

    @property
    def lake(self) -> Lake | None:
        """The DuckLake the warehouse lives in; None: the DuckDB file `duckdb_path`."""
        return lake_mode.lake_of(self.lake_catalog, self.lake_data_path)

    @property
    def warehouse_location(self) -> Path | Lake:
        """What `warehouse.connect` opens: the lake, else the DuckDB file."""
        return self.lake or self.duckdb_path

    @property
    def dbt_target_path(self) -> Path:
        """Where dbt writes its artefacts: under the project folder, never under the install."""
        if self._project_root is None:
            raise ValueError("settings not resolved against a project folder: call resolved()")
        return config.dbt_target_path(self._project_root)


def _catalog_resolved(catalog: str, root: Path) -> str:
    """A catalog file given relative to the project made absolute (dbt runs elsewhere)."""
    found = lake_mode.catalog_file(catalog)
    if found is None:
        return catalog
    kind, path = found
    return f"{kind}{config.resolve_path(path, root, Path())}"


def _data_path_resolved(data_path: str, root: Path) -> str:
    if not lake_mode.is_local(data_path):
        return data_path
    return str(config.resolve_path(data_path, root, Path()))


def settings_from_environment(environ: Mapping[str, str], **overrides: Any) -> PipelineSettings:
    """The settings of a process configured by environment variables (the Airflow DAG's): each
    field that declares an `env` read from `environ` (unset or blank: its default), `overrides`
    winning, all validated by the model. Not resolved: call `resolved(project_root)`.

    An unknown override name is a `TypeError`; a bad value a `ValueError` naming the setting,
    and the variable when the value came from one."""
    unknown = sorted(set(overrides) - set(_fields()))
    if unknown:
        raise TypeError(f"unknown settings {unknown}; known: {sorted(_fields())}")
    from_environment = {}
    for name, info in _fields().items():
        variable = env_var(info)
        text = (environ.get(variable) or "").strip() if variable else ""
        if text and name not in overrides:
            from_environment[name] = (variable, text)
    try:
        return PipelineSettings(
            **{name: text for name, (_, text) in from_environment.items()}, **overrides
        )
    except ValidationError as error:
        raise ValueError("; ".join(_named(e, from_environment) for e in error.errors())) from None


def _named(error: Any, from_environment: Mapping[str, tuple[str, str]]) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    if name in from_environment and name != "api_key":  # a key is never shown
        variable, text = from_environment[name]
        return f"{name} (from {variable}={text!r}): {error['msg']}"
    return f"{name or 'settings'}: {error['msg']}"


# --- what is derived from the model ---------------------------------------------------------------


def _fields() -> dict[str, FieldInfo]:
    return PipelineSettings.model_fields


def env_var(info: FieldInfo) -> str | None:
    return (info.json_schema_extra or {}).get("env")  # type: ignore[union-attr]


def default_of(info: FieldInfo) -> Any:
    return info.get_default(call_default_factory=True)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if is_dataclass(value):
        return "{" + ", ".join(f"{k}: {v}" for k, v in vars(value).items()) + "}"
    text = str(value)
    return f'"{text}"' if any(c in text for c in "*:#{}") or not text else text


def _type_name(info: FieldInfo) -> str:
    if is_dataclass(info.annotation):
        return "mapping"
    return (
        str(info.annotation)
        .replace("typing.", "")
        .replace("pathlib.", "")
        .replace("<class '", "")
        .replace("'>", "")
    )


def scaffold_attributes() -> tuple[dict[str, str], str]:
    """What `dg scaffold` writes: the settings read from the environment as `{{ env.X }}`
    attributes, and every other one as a commented line (its default, or an example) above its
    description."""
    from_env = {name: f"{{{{ env.{env_var(i)} }}}}" for name, i in _fields().items() if env_var(i)}
    lines = ["", "  # Optional: uncomment to change. Every setting: docs/configuration.md"]
    for name, info in _fields().items():
        if env_var(info):
            continue
        default = _yaml(default_of(info))
        example = (info.json_schema_extra or {}).get("example")  # type: ignore[union-attr]
        text = f"{info.description} Default: {default}." if example else info.description
        lines += textwrap.wrap(text or "", 96, initial_indent="  # ", subsequent_indent="  # ")
        lines.append(f"  # {name}: {example or default}")
    return from_env, "\n".join(lines) + "\n"


ENV_EXAMPLE_HEADER = """\
# Generated from close_calls_pipeline/core/settings.py (python -m close_calls_pipeline.core.settings).
# Copy to .env (ignored by git) and uncomment what you need, or export these variables.
# They reach the pipeline through close_calls_pipeline/defs/close_calls/defs.yaml ({{ env.X }}).
# `dg dev` / `dagster dev` read .env from the project root; `close-calls run`, `dg launch` and
# `dagster asset materialize` read the process environment.
"""

ENV_EXAMPLE_DAGSTER_HOME = """
# Where Dagster keeps run history, schedule state and asset check results (absolute path).
# Unset: `close-calls run` and `close-calls ui` use .dagster_home/ in the project folder (ignored
# by git); `dg launch` records there only when this names it. The sync cursor never depends on
# it: it is kept in DuckDB, committed with the data.
# DAGSTER_HOME=/absolute/path/to/elsewhere
"""

ENV_EXAMPLE_HASH_KEY = f"""
# The key of `personal_data: {{phone_numbers: hash}}` (docs/privacy.md): a long random secret, kept
# as safely as the API key (without it the hashes cannot be recomputed; with another one they no
# longer join). Read when a run starts, never stored in the settings, the warehouse or run config.
# {HASH_KEY_ENV}=a-long-random-secret
"""

_ENV_EXAMPLE_VALUES = {  # what each commented line shows
    config.CLOSE_API_KEY_ENV: "api_xxxxxxxxxxxxxxxxxxxxxxxx",
    config.CLOSE_CALLS_DUCKDB_ENV: "/absolute/path/to/close_calls.duckdb",
}


def env_example() -> str:
    """The text of `.env.example`."""
    blocks = [ENV_EXAMPLE_HEADER]
    for name, info in _fields().items():
        variable = env_var(info)
        if not variable:
            continue
        default = default_of(info)
        shown = _ENV_EXAMPLE_VALUES.get(variable, _yaml(default).strip('"'))
        unquoted = _yaml(default).strip('"')
        text = f"{info.description} Attribute `{name}`; default: {unquoted}."
        comment = textwrap.wrap(text, 96, initial_indent="# ", subsequent_indent="# ")
        blocks.append("\n" + "\n".join(comment) + f"\n# {variable}={shown}\n")
    blocks += [ENV_EXAMPLE_HASH_KEY, ENV_EXAMPLE_DAGSTER_HOME]
    return "".join(blocks)


CONFIGURATION_DOC_HEADER = """\
# Configuration

<!-- Generated from close_calls_pipeline/core/settings.py by
     `python -m close_calls_pipeline.core.settings`: edit the model, not this file. -->

Every setting is an attribute of `CloseCallsComponent` in `defs.yaml`
(`close_calls_pipeline/defs/close_calls/defs.yaml` in this repository, or the one
`dg scaffold defs close_calls_pipeline.CloseCallsComponent close_calls` writes in your project).
The ones with an environment variable read it there, as `"{{ env.NAME }}"`; an unset or empty
variable means the default. `.env.example` lists those variables.

"""


def configuration_markdown() -> str:
    """The text of `docs/configuration.md`: one table row per setting."""
    rows = [
        "| attribute | type | default | environment variable | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info in _fields().items():
        variable = f"`{env_var(info)}`" if env_var(info) else ""
        default = _yaml(default_of(info)).strip('"')
        description = (info.description or "").replace("|", "\\|")
        kind = _type_name(info).replace("|", "\\|")
        rows.append(f"| `{name}` | `{kind}` | `{default}` | {variable} | {description} |")
    return CONFIGURATION_DOC_HEADER + "\n".join(rows) + "\n"


GENERATED_FILES = {
    Path(".env.example"): env_example,
    Path("docs") / "configuration.md": configuration_markdown,
}


# The clone this module sits in: the generated files are committed there (a developer's tool).
_REPOSITORY = Path(__file__).resolve().parents[2]


def write_generated_files(root: Path = _REPOSITORY) -> list[Path]:
    written = []
    for relative, render in GENERATED_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render())
        written.append(path)
    return written


if __name__ == "__main__":  # python -m close_calls_pipeline.core.settings
    for path in write_generated_files():
        print(path, file=sys.stdout)
