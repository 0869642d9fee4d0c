"""The report as one self-contained HTML page: figures formatted here, charts drawn in the page.

Charts are drawn by Chart.js (vendored under static/, inlined into the page with the page's own
script and style): the page makes no request at all, which its Content-Security-Policy enforces.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import jinja2

from close_calls_pipeline.report.data import ReportData, Totals
from close_calls_pipeline.report.figures import (
    HEADLINE_FIGURES,
    fmt_hours,
    fmt_int,
    fmt_pct,
    fmt_usd,
)

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
STATIC_SCRIPTS = ("chart.umd.min.js", "chartjs-chart-matrix.min.js", "report.js")

# A fixed colour per disposition, so that the mix reads the same in every report.
DISPOSITION_COLOURS = {
    "answered": "#16a34a",
    "vm-left": "#2563eb",
    "vm-answer": "#60a5fa",
    "no-answer": "#94a3b8",
    "busy": "#f59e0b",
    "abandoned": "#a855f7",
    "blocked": "#ef4444",
    "error": "#b91c1c",
}


# --- number formats (the headline figures' own are in figures.py) --------------------------------


def fmt_seconds(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:,.1f} s"


def fmt_number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def fmt_day(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def headline_cards(current: Totals, previous: Totals) -> list[dict[str, Any]]:
    return [
        {
            "key": figure.key,
            "label": figure.label,
            "value": figure.shown(current),
            "change": figure.change(current, previous),
            "previous": f"previous: {figure.shown(previous)}",
        }
        for figure in HEADLINE_FIGURES
    ]


# --- tables --------------------------------------------------------------------------------------


def rep_rows(reps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for rep in reps:
        if rep["is_team"]:
            name = f"Team ({len(reps) - 1} rep{'' if len(reps) == 2 else 's'})"
        elif rep["user_id"] is None:
            name = "(no user)"
        else:
            name = rep["user_name"] or rep["user_id"]
        transcribed = rep["calls_with_conversation"]
        rows.append(
            {
                "is_team": rep["is_team"],
                "name": name,
                "user_id": rep["user_id"],
                "cells": [
                    fmt_int(rep["calls"]),
                    fmt_int(rep["answered_calls"]),
                    fmt_pct(rep["answer_rate"]),
                    fmt_hours(rep["total_duration_seconds"] / 3600),
                    fmt_usd(rep["total_cost_usd"]),
                    fmt_int(transcribed),
                    fmt_pct(rep["avg_user_talk_share"]),
                    fmt_seconds(rep["avg_longest_user_monologue_seconds"]),
                    fmt_number(rep["user_questions_per_call"]),
                    fmt_seconds(rep["avg_patience_seconds"]),
                ],
            }
        )
    return rows


REP_COLUMNS = [
    ("Calls", "Calls in the period."),
    ("Answered", "Calls with disposition 'answered'."),
    ("Answer rate", "Answered calls / calls."),
    ("Talk time", "Sum of call durations (duration_seconds), in hours."),
    ("Cost", "Sum of call costs, USD."),
    (
        "Transcribed",
        (
            "Calls with a non-empty recording transcript: the conversation figures to the right "
            "are over these calls."
        ),
    ),
    (
        "Talk share",
        (
            "The rep's share of the speaking time on a call: the rep's speaking time / (the "
            "rep's + the contact's), averaged over the transcribed calls."
        ),
    ),
    (
        "Longest monologue",
        (
            "The rep's longest uninterrupted stretch of speech in a call, averaged over the "
            "transcribed calls, seconds."
        ),
    ),
    ("Rep questions per call", "The rep's utterances containing '?', per transcribed call."),
    (
        "Patience",
        (
            "How long the rep lets the contact finish before speaking (overlap counts as 0), "
            "averaged over the call's contact-to-rep turns, then over the transcribed calls, "
            "seconds."
        ),
    ),
]


def outcome_rows(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": row["outcome"],
            "is_unset": row["is_unset"],
            "calls": fmt_int(row["calls"]),
            "share": fmt_pct(row["share_of_calls"]),
            "share_width": f"{max(row['share_of_calls'] * 100, 0.5):.1f}",
        }
        for row in outcomes
    ]


# --- chart specifications (drawn by static/report.js) --------------------------------------------


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


def heat_scale(hours: list[dict[str, Any]]) -> tuple[int, int]:
    """The colour scale of the heat map: the cells' answer rates, widened to whole tens of %.

    A scale fitted to the data shows where the rate is higher or lower; the legend says where
    it starts and ends."""
    rates = [row["answered_calls"] / row["calls"] * 100 for row in hours if row["calls"]]
    if not rates:
        return 0, 100
    low, high = math.floor(min(rates) / 10) * 10, math.ceil(max(rates) / 10) * 10
    return (low, high) if high > low else (max(low - 10, 0), min(high + 10, 100))


def chart_specs(data: ReportData) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {
            "id": "daily",
            "kind": "daily",
            "labels": [f"{row['call_date'].day} {row['call_date']:%b}" for row in data.daily],
            "dates": [row["call_date"].isoformat() for row in data.daily],
            "calls": [int(row["calls"]) for row in data.daily],
            "answered": [int(row["answered_calls"]) for row in data.daily],
            "answerRate": [_pct(row["answer_rate"]) for row in data.daily],
        },
        {
            "id": "dispositions",
            "kind": "hbar",
            "labels": [row["disposition"] for row in data.dispositions],
            "values": [int(row["calls"]) for row in data.dispositions],
            "shares": [_pct(row["share_of_calls"]) for row in data.dispositions],
            "colours": [
                DISPOSITION_COLOURS.get(row["disposition"], "#64748b") for row in data.dispositions
            ],
            "xTitle": "Calls",
        },
    ]
    if data.hours:
        specs.append(
            {
                "id": "hours",
                "kind": "heatmap",
                "xLabels": [f"{hour:02d}" for hour in range(24)],
                "yLabels": WEEKDAYS,
                "cells": [
                    {
                        "x": f"{row['hour']:02d}",
                        "y": WEEKDAYS[row["weekday"] - 1],
                        "calls": int(row["calls"]),
                        "answered": int(row["answered_calls"]),
                        "rate": _pct(row["answered_calls"] / row["calls"]),
                    }
                    for row in data.hours
                ],
                "xTitle": f"Hour of the call ({data.timezone})",
                "yTitle": "Weekday",
                "scale": heat_scale(data.hours),
            }
        )
    if sum(data.talk_share_buckets):
        specs.append(
            {
                "id": "talk-share",
                "kind": "histogram",
                "labels": [f"{i * 10}–{i * 10 + 10}%" for i in range(10)],
                "values": data.talk_share_buckets,
                "xTitle": "The rep's talk share on the call",
                "yTitle": "Transcribed calls",
            }
        )
    if data.talk_share_by_rep:
        specs.append(
            {
                "id": "talk-share-reps",
                "kind": "ranges",
                "labels": [
                    row["user_name"] or row["user_id"] or "(no user)"
                    for row in data.talk_share_by_rep
                ],
                "calls": [int(row["calls"]) for row in data.talk_share_by_rep],
                "percentiles": [
                    [round(p * 100, 1) for p in row["percentiles"]]
                    for row in data.talk_share_by_rep
                ],
                "xTitle": "The rep's talk share per call (%)",
            }
        )
    return specs


# --- the page ------------------------------------------------------------------------------------


def _static(name: str) -> str:
    text = resources.files("close_calls_pipeline.report").joinpath("static", name).read_text()
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"static/{name} cannot be inlined: it closes its own element")
    return text


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside <script type="application/json">."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("close_calls_pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(data: ReportData, *, generated_at: datetime | None = None) -> str:
    generated_at = generated_at or datetime.now(UTC)
    period, previous = data.period, data.period.previous
    specs = chart_specs(data)
    transcribed = data.reps[0]["calls_with_conversation"]  # the team's row
    hour_calls = sum(row["calls"] for row in data.hours)
    context = {
        "title": f"Call report, {fmt_day(period.start)} – {fmt_day(period.end)}",
        "period": period,
        "previous": previous,
        "period_text": f"{fmt_day(period.start)} – {fmt_day(period.end)}",
        "previous_text": f"{fmt_day(previous.start)} – {fmt_day(previous.end)}",
        "days": period.days,
        "generated": generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        "warehouse": data.warehouse,
        "last_call_date": fmt_day(data.last_call_date),
        "timezone": data.timezone,
        "cards": headline_cards(data.current, data.previous),
        "charts": {spec["id"] for spec in specs},
        "outcomes": outcome_rows(data.outcomes),
        "rep_columns": REP_COLUMNS,
        "reps": rep_rows(data.reps),
        "transcribed": fmt_int(transcribed),
        "transcribed_share": fmt_pct(transcribed / data.current.calls),
        "hour_calls": fmt_int(hour_calls),
        "heat_scale": heat_scale(data.hours),
        "style": _static("report.css"),
        "scripts": [_static(name) for name in STATIC_SCRIPTS],
        "data_json": _json_for_script({"charts": specs}),
    }
    return _environment().get_template("report.html.j2").render(**context)
