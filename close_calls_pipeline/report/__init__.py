"""The call-analytics report: one self-contained HTML file made from the analytics marts.

    from close_calls_pipeline.report import write_report
    report = write_report(duckdb_path)          # data/call_report.html beside the warehouse
    report.path, report.period, report.figures, report.markdown_summary

The warehouse is opened read-only, for as long as the queries take; the page is rendered after
the file is closed. Nothing here imports Dagster: the CLI and the Dagster asset both call
`write_report`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from close_calls_pipeline.core import config
from close_calls_pipeline.report.data import ReportError, Totals, load
from close_calls_pipeline.report.period import Period, PeriodError, resolve_period
from close_calls_pipeline.report.render import fmt_hours, fmt_int, fmt_pct, fmt_usd, render_html

__all__ = [
    "DEFAULT_REPORT_NAME",
    "Period",
    "PeriodError",
    "Report",
    "ReportError",
    "default_report_path",
    "reporting_timezone",
    "resolve_period",
    "write_report",
]

DEFAULT_REPORT_NAME = "call_report.html"


@dataclass(frozen=True)
class Report:
    """A written report: where, which days, and its headline figures."""

    path: Path
    period: Period
    previous_period: Period
    figures: dict[str, int | float | None]  # calls, answered_calls, answer_rate, ...
    previous_figures: dict[str, int | float | None]
    markdown_summary: str
    size_bytes: int


def default_report_path(duckdb_path: str | os.PathLike) -> Path:
    """`call_report.html` in the folder of the DuckDB file; another warehouse than
    `close_calls.duckdb` prefixes its name (`sandbox_call_report.html` beside `sandbox.duckdb`),
    so the sandbox's report never replaces the one of a real organization."""
    path = Path(duckdb_path).resolve()
    prefix = "" if path.name == config.DEFAULT_DUCKDB_RELATIVE_PATH.name else f"{path.stem}_"
    return path.parent / f"{prefix}{DEFAULT_REPORT_NAME}"


def reporting_timezone() -> str:
    """The dbt var `reporting_timezone` as dbt_project.yml sets it (the zone of `call_date`),
    UTC when it sets none. Used for the weekday x hour of calls."""
    project = config.DBT_PROJECT_DIR / "dbt_project.yml"
    found = re.search(
        r"^\s*reporting_timezone:\s*[\"']?([^\"'\s#]+)", project.read_text(), re.MULTILINE
    )
    return found.group(1) if found else "UTC"


def write_report(
    duckdb_path: str,
    out: Path | None = None,
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
    timezone: str | None = None,
) -> Report:
    """Write the call report for a period and return what it shows.

    The period is `start`..`end` (both included), or the last `days` days (default 30) ending on
    the last day with calls; see `resolve_period`. `timezone` is the zone of the weekday x hour
    heat map (default: the dbt project's `reporting_timezone`). Raises `PeriodError` for an
    invalid period and `ReportError` when the warehouse or its marts are missing.
    """
    out = Path(out) if out is not None else default_report_path(duckdb_path)
    data = load(
        duckdb_path, days=days, start=start, end=end, timezone=timezone or reporting_timezone()
    )
    html = render_html(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target, then renamed: a browser or a copy never sees half a file.
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(html)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Report(
        path=out,
        period=data.period,
        previous_period=data.period.previous,
        figures=data.current.figures(),
        previous_figures=data.previous.figures(),
        markdown_summary=markdown_summary(data.period, data.current, data.previous),
        size_bytes=out.stat().st_size,
    )


def _change(now, before, *, points: bool = False) -> str:
    if now is None or before is None:
        return "–"
    if points:
        return f"{(float(now) - float(before)) * 100:+.1f} pts"
    if not before:
        return "–" if not now else "new"
    return f"{(float(now) - float(before)) / float(before) * 100:+.1f}%"


def markdown_summary(period: Period, current: Totals, previous: Totals) -> str:
    """The headline figures as a short markdown table (for Dagster metadata)."""
    rows = [
        ("Calls", fmt_int(current.calls), _change(current.calls, previous.calls)),
        (
            "Answered calls",
            fmt_int(current.answered_calls),
            _change(current.answered_calls, previous.answered_calls),
        ),
        (
            "Answer rate",
            fmt_pct(current.answer_rate),
            _change(current.answer_rate, previous.answer_rate, points=True),
        ),
        (
            "Talk time",
            fmt_hours(current.total_duration_seconds),
            _change(current.total_duration_seconds, previous.total_duration_seconds),
        ),
        (
            "Total cost",
            fmt_usd(current.total_cost_usd),
            _change(current.total_cost_usd, previous.total_cost_usd),
        ),
        (
            "Cost per answered call",
            fmt_usd(current.cost_per_answered_call_usd),
            _change(current.cost_per_answered_call_usd, previous.cost_per_answered_call_usd),
        ),
    ]
    lines = [
        (
            f"**Calls {period.start} to {period.end}** ({period.days} days), change against "
            f"{period.previous.start} to {period.previous.end}"
        ),
        "",
        "| Figure | Value | Change |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {value} | {change} |" for name, value, change in rows),
    ]
    return "\n".join(lines)
