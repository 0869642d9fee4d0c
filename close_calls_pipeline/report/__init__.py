"""The call-analytics report: one self-contained HTML file made from the analytics marts.

    from close_calls_pipeline.report import write_report
    report = write_report(duckdb_path)          # data/call_report.html beside the warehouse
    report.path, report.period, report.figures, report.markdown_summary

The warehouse (the DuckDB file, or the lake when one is given) is opened read-only, for as
long as the queries take; the page is rendered after it is closed. Nothing here imports
Dagster: the CLI and the Dagster asset both call `write_report`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from close_calls_pipeline.core import config, files
from close_calls_pipeline.core.lake import Lake
from close_calls_pipeline.report.data import REPORT_MARTS, ReportError, Totals, load
from close_calls_pipeline.report.figures import HEADLINE_FIGURES, figure_values
from close_calls_pipeline.report.period import (
    EmptyPeriodError,
    Period,
    PeriodError,
    resolve_period,
)
from close_calls_pipeline.report.render import render_html

__all__ = [
    "DEFAULT_REPORT_NAME",
    "REPORT_MARTS",
    "EmptyPeriodError",
    "Period",
    "PeriodError",
    "Report",
    "ReportError",
    "default_report_path",
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


def write_report(
    duckdb_path: str,
    out: Path | None = None,
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
    today: date | None = None,
    timezone: str = config.DEFAULT_REPORTING_TIMEZONE,
    file_mode: str = files.PRIVATE,
    lake: Lake | None = None,
) -> Report:
    """Write the call report for a period and return what it shows.

    The period is `start`..`end` (both included), or the `days` (default 30) whole days ending
    on the last complete day (yesterday in `timezone`, or the last day with calls if earlier);
    see `resolve_period`. `timezone` is the `reporting_timezone` setting, the zone dbt computed
    `call_date` in. Raises `PeriodError` for an invalid period, `EmptyPeriodError` (a
    `PeriodError`) for a period without calls, and `ReportError` when the warehouse or its marts
    are missing. With a `lake`, the marts are read from it (attached read-only) and
    `duckdb_path` only places the default `out`.
    """
    out = Path(out) if out is not None else default_report_path(duckdb_path)
    data = load(
        duckdb_path, days=days, start=start, end=end, timezone=timezone, today=today, lake=lake
    )
    html = render_html(data)
    files.private_dir(out.parent, file_mode)
    # Written next to the target, then renamed: a browser or a copy never sees half a file.
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(html)
        files.restrict(temporary, file_mode)  # 0600, or 0640 shared with the group
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Report(
        path=out,
        period=data.period,
        previous_period=data.period.previous,
        figures=figure_values(data.current),
        previous_figures=figure_values(data.previous),
        markdown_summary=markdown_summary(data.period, data.current, data.previous),
        size_bytes=out.stat().st_size,
    )


def markdown_summary(period: Period, current: Totals, previous: Totals) -> str:
    """The headline figures as a short markdown table (for Dagster metadata)."""
    lines = [
        (
            f"**Calls {period.start} to {period.end}** ({period.days} days), change against "
            f"{period.previous.start} to {period.previous.end}"
        ),
        "",
        "| Figure | Value | Change |",
        "| --- | ---: | ---: |",
        *(
            f"| {figure.label} | {figure.shown(current)} | "
            f"{figure.change(current, previous).text} |"
            for figure in HEADLINE_FIGURES
        ),
    ]
    return "\n".join(lines)
