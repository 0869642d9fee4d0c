"""The reporting period: which days a report covers, and the period it is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

DEFAULT_DAYS = 30


class PeriodError(ValueError):
    """The requested period is invalid (reversed, empty, or over-specified)."""


class EmptyPeriodError(PeriodError):
    """The period has no calls (e.g. it starts after the last call): refused, like a reversed
    range, rather than written as a report of zeros."""


@dataclass(frozen=True)
class Period:
    """Calendar days `start` to `end`, both included (call_date in the reporting zone)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise PeriodError(f"the period ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        return f"{self.start} to {self.end}"


def last_complete_day(last_call_date: date | None, today: date) -> date:
    """The day a default period ends on: yesterday (today is not over), or the last day with
    calls when that is earlier (the warehouse was last synced before yesterday)."""
    yesterday = today - timedelta(days=1)
    return min(last_call_date, yesterday) if last_call_date else yesterday


def resolve_period(
    last_call_date: date | None,
    *,
    today: date,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> Period:
    """The period a report covers; `today` is the date in the marts' reporting time zone.

    - `start` and `end`: those days;
    - `start` only: from `start` to the last complete day (see `last_complete_day`);
    - `end` only: the 30 days ending on `end`;
    - neither: the `days` (default 30) whole days ending on the last complete day.
    """
    if days is not None and (start is not None or end is not None):
        raise PeriodError("give either a number of days or a date range (from / to), not both")
    if days is not None and days < 1:
        raise PeriodError(f"the number of days must be at least 1, got {days}")
    if start is not None and end is not None:
        if end < start:
            raise PeriodError(f"the range is reversed: {start} is after {end}")
        return Period(start, end)
    anchor = last_complete_day(last_call_date, today)
    if start is not None:
        return Period(start, max(start, anchor))
    if end is not None:
        return Period(end - timedelta(days=DEFAULT_DAYS - 1), end)
    length = days or DEFAULT_DAYS
    return Period(anchor - timedelta(days=length - 1), anchor)
