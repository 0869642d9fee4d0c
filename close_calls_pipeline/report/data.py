"""Everything the report shows, read from the marts in one short read-only DuckDB session.

The report aggregates in SQL (sql/*.sql): what comes back is a few rows per day, disposition,
outcome, rep and weekday-hour, whatever the number of calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from close_calls_pipeline.report.period import Period, resolve_period

REQUIRED_MARTS = ("fct_calls", "call_metrics_daily", "fct_call_conversations")


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

    def figures(self) -> dict[str, int | float | None]:
        """The headline figures as plain numbers (costs as float USD)."""
        per_answered = self.cost_per_answered_call_usd
        return {
            "calls": self.calls,
            "answered_calls": self.answered_calls,
            "answer_rate": self.answer_rate,
            "talk_time_hours": self.talk_time_hours,
            "total_cost_usd": float(self.total_cost_usd),
            "cost_per_answered_call_usd": None if per_answered is None else float(per_answered),
        }


@dataclass
class ReportData:
    warehouse: str
    period: Period
    timezone: str
    last_call_date: date | None
    current: Totals
    previous: Totals
    daily: list[dict[str, Any]]
    dispositions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    reps: list[dict[str, Any]]  # the team first, then reps by calls
    hours: list[dict[str, Any]]  # weekday (1 = Monday) x hour cells with calls
    calls_without_time: int
    talk_share_buckets: list[int]  # calls per 10 % bucket of the rep's talk share
    talk_share_by_rep: list[dict[str, Any]]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = 'analytics'"
    ).fetchall()
    return {name for (name,) in rows}


def load(
    duckdb_path: str,
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
    timezone: str = "UTC",
) -> ReportData:
    """Resolve the period and read every figure of the report (DuckDB opened read-only)."""
    path = Path(duckdb_path)
    if not path.is_file():
        raise ReportError(f"no warehouse at {path}: run `close-calls run` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise ReportError(f"cannot open the warehouse {path} read-only: {error}") from error
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables = _tables(con)
        missing = [name for name in REQUIRED_MARTS if name not in tables]
        if missing:
            raise ReportError(
                f"the warehouse {path} has no analytics.{missing[0]}: run `close-calls run` "
                "(or `dbt build`) first"
            )
        (last_call_date,) = con.execute("select max(call_date) from analytics.fct_calls").fetchone()
        period = resolve_period(last_call_date, days=days, start=start, end=end)
        return _load_period(con, str(path), period, timezone, last_call_date)
    finally:
        con.close()


def _load_period(
    con: duckdb.DuckDBPyConnection,
    path: str,
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

    hours = _rows(con, read_sql("hours.sql"), {**params, "tz": timezone})
    calls_without_time = sum(row["calls"] for row in hours if row["hour"] is None)
    hours = [row for row in hours if row["hour"] is not None]

    buckets = [0] * 10
    for row in _rows(con, read_sql("talk_share.sql"), params):
        buckets[row["bucket"]] = int(row["calls"])

    return ReportData(
        warehouse=path,
        period=period,
        timezone=timezone,
        last_call_date=last_call_date,
        current=current,
        previous=before,
        daily=_rows(con, read_sql("daily.sql"), params),
        dispositions=_rows(con, read_sql("dispositions.sql"), params),
        outcomes=_rows(con, read_sql("outcomes.sql"), params),
        reps=_rows(con, read_sql("reps.sql"), params),
        hours=hours,
        calls_without_time=calls_without_time,
        talk_share_buckets=buckets,
        talk_share_by_rep=_rows(con, read_sql("talk_share_by_rep.sql"), params),
    )
