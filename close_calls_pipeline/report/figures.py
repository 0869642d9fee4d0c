"""The six headline figures, declared once: what each is, how it is shown, how it changes.

The page's cards, the Markdown summary (Dagster metadata) and `Report.figures` are all made
from `HEADLINE_FIGURES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from close_calls_pipeline.report.data import Totals


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def fmt_usd(value: Decimal | float | None) -> str:
    if value is None:
        return "–"
    cents = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${cents:,.2f}"


def fmt_hours(hours: float | None) -> str:
    """Hours, with one decimal (two under an hour, where one would round minutes away)."""
    if hours is None:
        return "–"
    return f"{hours:,.1f} h" if round(hours, 1) >= 1 else f"{hours:.2f} h"


@dataclass(frozen=True)
class Change:
    """A figure's change against the previous period, for display."""

    text: str
    direction: str  # up, down, none
    tone: str  # good, bad, neutral


def change(current, previous, *, points: bool = False, higher_is_better: bool = True) -> Change:
    """Relative change in %, or in percentage points for a rate (`points`)."""
    if current is None or previous is None:
        return Change("no previous figure", "none", "neutral")
    current, previous = float(current), float(previous)
    if points:
        delta = (current - previous) * 100
        text = f"{delta:+.1f} pts"
    elif previous == 0:
        if current == 0:
            return Change("no change", "none", "neutral")
        return Change("none before", "up", "neutral")
    else:
        delta = (current - previous) / previous * 100
        text = f"{delta:+.1f}%"
    if round(delta, 1) == 0:
        return Change("no change", "none", "neutral")
    up = delta > 0
    return Change(text, "up" if up else "down", "good" if up == higher_is_better else "bad")


@dataclass(frozen=True)
class Figure:
    key: str  # the name in Report.figures and in the page's data-figure attribute
    label: str
    value: Callable[[Totals], int | float | Decimal | None]
    fmt: Callable[[int | float | Decimal | None], str]
    points: bool = False  # a rate: its change is in percentage points
    higher_is_better: bool = True

    def shown(self, totals: Totals) -> str:
        return self.fmt(self.value(totals))

    def change(self, current: Totals, previous: Totals) -> Change:
        return change(
            self.value(current),
            self.value(previous),
            points=self.points,
            higher_is_better=self.higher_is_better,
        )


HEADLINE_FIGURES = (
    Figure("calls", "Calls", lambda t: t.calls, fmt_int),
    Figure("answered_calls", "Answered calls", lambda t: t.answered_calls, fmt_int),
    Figure("answer_rate", "Answer rate", lambda t: t.answer_rate, fmt_pct, points=True),
    Figure("talk_time_hours", "Talk time", lambda t: t.talk_time_hours, fmt_hours),
    Figure(
        "total_cost_usd",
        "Total cost",
        lambda t: t.total_cost_usd,
        fmt_usd,
        higher_is_better=False,
    ),
    Figure(
        "cost_per_answered_call_usd",
        "Cost per answered call",
        lambda t: t.cost_per_answered_call_usd,
        fmt_usd,
        higher_is_better=False,
    ),
)


def figure_values(totals: Totals) -> dict[str, int | float | None]:
    """The headline figures as plain numbers (money as float USD), by key."""
    values = {}
    for figure in HEADLINE_FIGURES:
        value = figure.value(totals)
        values[figure.key] = float(value) if isinstance(value, Decimal) else value
    return values
