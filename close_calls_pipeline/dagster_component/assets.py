"""Dagster assets of the Close ingestion: calls + utterances (one sync writes both), outcomes,
users.

Lineage: close/calls, close/call_transcript_utterances, close/outcomes, close/users are the
tables the sync lands in DuckDB; the dbt sources of the same names are mapped to these keys, so
every dbt model hangs below them in one graph.

DuckDB has one writer: the steps write one at a time (in-process executor, dependency order)
and each opens its connection only for its own work.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import duckdb
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)
from pydantic import Field, field_validator

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.config import parse_backfill_start
from close_calls_pipeline.core.settings import PipelineSettings
from close_calls_pipeline.core.sync import SyncOptions, refresh_reference_tables, sync_calls
from close_calls_pipeline.dagster_component.keys import (
    CALLS_KEY,
    INGESTION_GROUP,
    OUTCOMES_KEY,
    USERS_KEY,
    UTTERANCES_KEY,
    WAREHOUSE_POOL,
)
from close_calls_pipeline.dagster_component.resources import CloseApiResource, WarehouseResource


def calls_freshness(settings: PipelineSettings) -> FreshnessPolicy | None:
    """close/calls's freshness policy, from the settings; None when it is off (the default)."""
    fail, warn = settings.freshness_fail_after_hours, settings.freshness_warn_after_hours
    if fail is None:
        return None
    return FreshnessPolicy.time_window(
        fail_window=timedelta(hours=fail),
        warn_window=timedelta(hours=warn) if warn is not None else None,
    )


# --- column schemas: types from the warehouse contract, descriptions from the dbt sources -------


@cache
def _contract_columns() -> dict[str, list[tuple[str, str]]]:
    """Column names and DuckDB types of every `close.*` table, from `core/sql/schema.sql`."""
    con = duckdb.connect(":memory:")
    try:
        warehouse.run_script(con, "schema.sql")
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'close' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in rows:
        columns.setdefault(table, []).append((column, data_type))
    return columns


ColumnDescriptions = dict[str, dict[str, str]]  # table -> column -> description


def table_schema(table: str, described: dict[str, str]) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name, data_type, description=described.get(name) or None)
            for name, data_type in _contract_columns()[table]
        ]
    )


def _spec(key: AssetKey, description: str, columns: ColumnDescriptions, **kwargs: Any) -> AssetSpec:
    table = key.path[-1]
    return AssetSpec(
        key,
        description=description,
        group_name=INGESTION_GROUP,
        kinds={"python", "duckdb"},
        metadata={
            "dagster/column_schema": table_schema(table, columns.get(table, {})),
            "dagster/table_name": f"close.{table}",
            "warehouse_table": f"close.{table}",
        },
        **kwargs,
    )


# --- ingestion --------------------------------------------------------------------------------------


class SyncConfig(Config):
    """Run config of the calls sync."""

    reconcile: bool = Field(
        default=False,
        description="Walk every call by date_created and soft-delete the ones Close no longer "
        "has, instead of reading the Event Log since the high-water mark.",
    )
    backfill_start: str | None = Field(
        default=None,
        description="ISO date (YYYY-MM-DD, UTC), not in the future: where a first walk starts. "
        "Unset: the component's backfill_start, else the whole history.",
    )

    allow_mass_delete: bool = Field(
        default=False,
        description="Let a reconcile soft-delete more than the component's "
        "max_reconcile_delete_share of the live calls (it stops before deleting otherwise).",
    )

    @field_validator("backfill_start")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        parse_backfill_start(value)
        return value or None


def _markdown(columns: list[str], rows: list[tuple]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _preview(con: duckdb.DuckDBPyConnection, query: str) -> MetadataValue:
    result = con.execute(query)
    columns = [d[0] for d in result.description]
    return MetadataValue.md(_markdown(columns, result.fetchall()))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def build_ingestion_assets(
    columns: ColumnDescriptions, settings: PipelineSettings
) -> list[AssetsDefinition]:
    """The calls + utterances multi-asset and the reference tables' multi-asset."""

    @multi_asset(
        name="close_calls",
        specs=[
            _spec(
                CALLS_KEY,
                "Close call activities, one row per call id ever seen (deleted calls kept with "
                "`_deleted_at`). Synced incrementally through the Close Event Log since the "
                "high-water mark kept in close.sync_state; a walk by date_created on the first run, "
                "on a stale cursor or on request (`reconcile`).",
                columns,
                freshness_policy=calls_freshness(settings),
            ),
            _spec(
                UTTERANCES_KEY,
                "Transcript utterances (recording and voicemail) of the calls that exist in Close, "
                "one row per utterance; replaced whenever their call changes.",
                columns,
            ),
        ],
        pool=WAREHOUSE_POOL,
    )
    def close_calls(
        context: AssetExecutionContext,
        config: SyncConfig,
        close_api: CloseApiResource,
        duckdb_warehouse: WarehouseResource,
    ) -> Iterator[MaterializeResult]:
        """Sync Close calls (and their transcripts) into close.calls / close.call_transcript_utterances."""
        options = SyncOptions(
            backfill_start=parse_backfill_start(config.backfill_start or settings.backfill_start),
            reconcile=config.reconcile,
            workers=close_api.workers,
            event_overlap_minutes=settings.event_overlap_minutes,
            max_delete_share=settings.max_reconcile_delete_share,
            allow_mass_delete=config.allow_mass_delete,
            personal_data=duckdb_warehouse.personal_data_policy(),
            hash_key=duckdb_warehouse.hash_key(),
        )
        with close_api.get_client() as client, duckdb_warehouse.connect() as con:
            summary = sync_calls(client, con, options)
            counts = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE _deleted_at IS NULL), "
                "count(*) FILTER (WHERE _deleted_at IS NOT NULL) FROM close.calls"
            ).fetchone()
            (utterance_rows,) = con.execute(
                "SELECT count(*) FROM close.call_transcript_utterances"
            ).fetchone()
            calls_preview = _preview(
                con,
                "SELECT id, activity_at, date_updated, direction, disposition, duration, user_name "
                "FROM close.calls WHERE _deleted_at IS NULL ORDER BY date_updated DESC, id LIMIT 5",
            )
            utterances_preview = _preview(
                con,
                "SELECT u.call_id, u.transcript_type, u.utterance_index, u.speaker_side, "
                "u.start_seconds, u.end_seconds, u.is_question "  # never the text: personal data
                "FROM close.call_transcript_utterances u JOIN close.calls c ON c.id = u.call_id "
                "ORDER BY c.date_updated DESC, u.call_id, u.transcript_type, u.utterance_index "
                "LIMIT 5",
            )

        s = summary
        yield MaterializeResult(
            asset_key=CALLS_KEY,
            metadata={
                "source": close_api.source,
                "sync_run_id": s.run_id,
                # the policy's choices, e.g. "phone_numbers=hash notes=drop ..." (docs/privacy.md)
                "personal_data": " ".join(
                    f"{k}={v}" for k, v in options.personal_data.as_dict().items()
                ),
                "mode": s.mode,
                "calls_inserted": s.calls_inserted,
                "calls_updated": s.calls_updated,
                "calls_deleted": s.calls_deleted,
                "records_rejected": s.records_rejected,
                "records_repaired": s.records_repaired,
                **({"drift_calls": s.drift_calls} if s.drift_calls is not None else {}),
                "requests": s.requests,
                "rate_limited_429": s.rate_limited,
                "retries": s.retries,
                "seconds_waited": MetadataValue.float(float(s.seconds_waited)),
                "high_water_mark_before": _iso(s.high_water_mark_before),
                "high_water_mark_after": _iso(s.high_water_mark_after),
                "duration_seconds": MetadataValue.float(float(s.duration_seconds)),
                "dagster/row_count": counts[0],
                "live_calls": counts[1],
                "deleted_calls": counts[2],
                "preview": calls_preview,
            },
        )
        yield MaterializeResult(
            asset_key=UTTERANCES_KEY,
            metadata={
                "sync_run_id": s.run_id,
                "utterances_written": s.utterances_written,
                "dagster/row_count": utterance_rows,
                "preview": utterances_preview,
            },
        )

    @multi_asset(
        name="close_reference_tables",
        specs=[
            _spec(
                OUTCOMES_KEY,
                "Close custom call outcomes, a full copy refreshed on every run.",
                columns,
            ),
            _spec(
                USERS_KEY,
                "Close users of the organization, a full copy refreshed on every run.",
                columns,
            ),
        ],
        can_subset=True,
        pool=WAREHOUSE_POOL,
    )
    def close_reference_tables(
        context: AssetExecutionContext,
        close_api: CloseApiResource,
        duckdb_warehouse: WarehouseResource,
    ) -> Iterator[MaterializeResult]:
        """Replace close.outcomes / close.users with a fresh copy from Close."""
        keys = [key for key in (OUTCOMES_KEY, USERS_KEY) if key in context.selected_asset_keys]
        tables = tuple(key.path[-1] for key in keys)
        with close_api.get_client() as client, duckdb_warehouse.connect() as con:
            started = time.monotonic()
            counts = refresh_reference_tables(client, con, tables=tables)
            duration = time.monotonic() - started
            previews = {
                "outcomes": _preview(
                    con, "SELECT id, name, type FROM close.outcomes ORDER BY name, id LIMIT 5"
                ),
                "users": _preview(
                    con,
                    "SELECT id, first_name, last_name, email FROM close.users "
                    "ORDER BY last_name, first_name, id LIMIT 5",
                ),
            }
        for key, table in zip(keys, tables):
            yield MaterializeResult(
                asset_key=key,
                metadata={
                    "dagster/row_count": counts[table],
                    "duration_seconds": MetadataValue.float(duration),
                    "preview": previews[table],
                },
            )

    return [close_calls, close_reference_tables]
