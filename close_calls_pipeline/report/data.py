"""Everything the report shows, read from the marts in one short read-only DuckDB session.

The report computes no metric of its own: it sums the additive columns of day-grained marts
over its period and divides at the end (sql/*.sql), so a figure has one definition, in dbt.
What comes back is a few rows per day, disposition, outcome, rep and weekday-hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from close_calls_pipeline.core.lake import Lake, connect_lake
from close_calls_pipeline.report.period import EmptyPeriodError, Period, resolve_period

# The marts the report reads (in schema analytics): the Dagster asset depends on exactly these.
REPORT_MARTS = (
    "call_metrics_daily",
    "call_metrics_by_user_daily",
    "call_metrics_by_disposition_daily",
    "call_metrics_by_outcome_daily",
    "call_metrics_by_hour_daily",
    "fct_call_conversations",
)


class ReportError(RuntimeError):
    """The report cannot be made from this warehouse (missing file or marts)."""


def read_sql(name: str) -> str:
    return resources.files("close_calls_pipeline.report").joinpath("sql", name).read_text()


@dataclass(frozen=True)
class Totals:
    """Additive headline measures of one period."""

    calls: int
    answered_calls: int
    total_duration_seconds: int
    total_cost_usd: Decimal

    @property
    def answer_rate(self) -> float | None:
        return self.answered_calls / self.calls if self.calls else None

    @property
    def talk_time_hours(self) -> float:
        return self.total_duration_seconds / 3600

    @property
    def cost_per_answered_call_usd(self) -> Decimal | None:
        return self.total_cost_usd / self.answered_calls if self.answered_calls else None


@dataclass
class ReportData:
    warehouse: str  # its name on the page: the DuckDB file's, or the lake's description
    period: Period
    timezone: str
    last_call_date: date
    current: Totals
    previous: Totals
    daily: list[dict[str, Any]]
    dispositions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    reps: list[dict[str, Any]]  # the team first, then reps by calls
    hours: list[dict[str, Any]]  # weekday (1 = Monday) x hour cells with calls
    talk_share_buckets: list[int]  # calls per 10 % bucket of the rep's talk share
    talk_share_by_rep: list[dict[str, Any]]  # in the order of the reps table


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _tables(con: duckdb.DuckDBPyConnection, schema: str = "analytics") -> set[str]:
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = ?", [schema]
    ).fetchall()
    return {name for (name,) in rows}


def connect_read_only(duckdb_path: str, lake: Lake | None) -> tuple[duckdb.DuckDBPyConnection, str]:
    """The warehouse opened read-only, and its name for messages and the page: the lake when
    there is one (attached read-only, as the last complete dbt build left it), else the DuckDB
    file."""
    if lake is not None:
        try:
            return _lake_as_last_built(lake), lake.describe()
        except duckdb.Error as error:
            raise ReportError(f"cannot attach the lake read-only: {error}") from error
    path = Path(duckdb_path)
    if not path.is_file():
        raise ReportError(f"no warehouse at {path}: run `close-calls run` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise ReportError(f"cannot open the warehouse {path} read-only: {error}") from error
    return con, path.name


def _last_complete_build(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the last dbt build that built every model ended: its on-run-end hook records it
    (dbt_project/macros/incremental_build.sql) after every model's commit."""
    if "builds" not in _tables(con, "build_state"):
        return None
    (built_at,) = con.execute(
        "select max(recorded_at) from build_state.builds where complete"
    ).fetchone()
    return built_at


def _lake_as_last_built(lake: Lake) -> duckdb.DuckDBPyConnection:
    """The lake at the snapshot where the last complete dbt build ended. dbt commits model by
    model, so while a build runs the lake's newest snapshot holds marts of two builds; the
    report's figures come from one. The newest snapshot when no complete build is recorded, or
    when maintenance expired that build's snapshot."""
    con = connect_lake(lake, read_only=True)
    try:
        built_at = _last_complete_build(con)
    finally:
        con.close()
    if built_at is not None:
        try:
            return connect_lake(lake, read_only=True, snapshot_time=built_at)
        except duckdb.InvalidInputException:  # no snapshot that old any more
            pass
    return connect_lake(lake, read_only=True)


def load(
    duckdb_path: str,
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
    timezone: str = "UTC",
    today: date | None = None,
    lake: Lake | None = None,
) -> ReportData:
    """Resolve the period and read every figure of the report (opened read-only: the lake when
    `lake` is given, else the DuckDB file).

    `timezone` is the marts' reporting_timezone: the zone of their days, in which `today` (by
    default the date there now) is taken. Raises `EmptyPeriodError` when the period has no calls.
    """
    con, warehouse = connect_read_only(duckdb_path, lake)
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables = _tables(con)
        missing = [name for name in REPORT_MARTS if name not in tables]
        if missing:
            raise ReportError(
                f"the warehouse {warehouse} has no analytics.{missing[0]}: run `close-calls run` "
                "(or `dbt build`) first"
            )
        first_call_date, last_call_date = con.execute(
            "select min(call_date), max(call_date) from analytics.call_metrics_daily"
        ).fetchone()
        today = today or datetime.now(ZoneInfo(timezone)).date()
        period = resolve_period(last_call_date, days=days, start=start, end=end, today=today)
        data = _load_period(con, warehouse, period, timezone, last_call_date)
    finally:
        con.close()
    if not data.current.calls:
        if last_call_date is None:
            raise EmptyPeriodError("the warehouse has no calls yet: run `close-calls run` first")
        raise EmptyPeriodError(
            f"no calls from {period.start} to {period.end}: the warehouse has calls from "
            f"{first_call_date} to {last_call_date}"
        )
    return data


def _in_reps_order(reps: list[dict[str, Any]], by_rep: list[dict[str, Any]]) -> list[dict]:
    """The talk-share rows in the order of the reps table, with the rep's name from it."""
    order = {rep["user_id"]: i for i, rep in enumerate(reps) if not rep["is_team"]}
    names = {rep["user_id"]: rep["user_name"] for rep in reps if not rep["is_team"]}
    rows = [{**row, "user_name": names.get(row["user_id"])} for row in by_rep]
    return sorted(rows, key=lambda row: order.get(row["user_id"], len(order)))


def _load_period(
    con: duckdb.DuckDBPyConnection,
    warehouse: str,
    period: Period,
    timezone: str,
    last_call_date: date | None,
) -> ReportData:
    previous = period.previous
    params = {"start": period.start, "end": period.end}
    head = _rows(
        con,
        read_sql("headline.sql"),
        {**params, "prev_start": previous.start, "prev_end": previous.end},
    )[0]
    current = Totals(
        int(head["calls"]),
        int(head["answered_calls"]),
        int(head["total_duration_seconds"]),
        Decimal(head["total_cost_usd"]),
    )
    before = Totals(
        int(head["prev_calls"]),
        int(head["prev_answered_calls"]),
        int(head["prev_total_duration_seconds"]),
        Decimal(head["prev_total_cost_usd"]),
    )

    buckets = [0] * 10
    for row in _rows(con, read_sql("talk_share.sql"), params):
        buckets[row["bucket"]] = int(row["calls"])

    reps = _rows(con, read_sql("reps.sql"), params)
    return ReportData(
        warehouse=warehouse,
        period=period,
        timezone=timezone,
        last_call_date=last_call_date,
        current=current,
        previous=before,
        daily=_rows(con, read_sql("daily.sql"), params),
        dispositions=_rows(con, read_sql("dispositions.sql"), params),
        outcomes=_rows(con, read_sql("outcomes.sql"), params),
        reps=reps,
        hours=_rows(con, read_sql("hours.sql"), params),
        talk_share_buckets=buckets,
        talk_share_by_rep=_in_reps_order(
            reps, _rows(con, read_sql("talk_share_by_rep.sql"), params)
        ),
    )
