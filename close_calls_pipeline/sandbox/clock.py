"""The sandbox's time: microsecond timestamps, Close's renderings of them, and every time
constant of the sandbox (its window, its Event Log, its hourly changes), declared once.

Timestamps are integer microseconds since the Unix epoch (`us`), which sort and compare cheaply;
they are rendered the way Close renders them (ISO 8601 with `+00:00`, fractional seconds only
when non-zero; the Event Log without offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
HOUR_US = 3600 * US_PER_S
US_PER_DAY = 24 * HOUR_US

# The window: a sandbox serves the calls created in its last HISTORY_DAYS days, spread evenly
# over the hours (so `calls` of them at any time); a live sandbox deletes each call when it
# leaves the window, so its size does not depend on the date.
HISTORY_DAYS = 180
# Close's Event Log: entries are kept 30 days; rapid updates of one object are merged.
RETENTION_US = 30 * US_PER_DAY
CONSOLIDATION_US = 60 * US_PER_S
# Live mode, per call: how many edits it gets over its life on average, and which share of them
# comes in its first days (notes, outcomes and transcripts mostly arrive soon after a call).
EDITS_PER_CALL = 3.0
EARLY_EDIT_SHARE = 0.7
EARLY_EDIT_HOURS = 14 * 24
# Live mode: short-lived calls beside the window's, as (age in hours at which each is deleted,
# how many are alive at any time), so deletes of recent calls happen too; they add a fixed
# number of calls (the sum of the counts), whatever the date.
SHORT_LIVED_CALLS = ((6, 1), (30 * 24, 12))
# Users and outcomes are dated before this day: fixed, so /user/ and /outcome/ do not change
# with the clock (it does not affect which calls are served).
REFERENCE_DAY = datetime(2026, 1, 1, tzinfo=UTC)


def spread(hour: int, count: int, period_hours: int) -> int:
    """How many of `count` items fall in `hour` when spread evenly over every `period_hours`
    consecutive hours: any `period_hours` consecutive hours hold exactly `count` items."""
    return (hour + 1) * count // period_hours - hour * count // period_hours


def dt_to_us(dt: datetime) -> int:
    """Aware datetime (naive = UTC) → integer microseconds since the epoch."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def us_to_dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """Close's call timestamp form: `2026-01-02T03:04:05.637000+00:00` or without fraction."""
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def iso_naive(us: int) -> str:
    """The event log's form: no offset, always microseconds."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_ts(value: str) -> int:
    """ISO 8601 date-time (offset-aware, naive = UTC) or plain date (midnight UTC) → us.

    Raises ValueError when it does not parse.
    """
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # a '+' in an unencoded query string arrives as a space
        if " " in text[10:]:
            head, _, tail = text.rpartition(" ")
            dt = datetime.fromisoformat(head + "+" + tail)
        else:
            raise
    return dt_to_us(dt)


def live_size(calls: int) -> int:
    """How many calls a live sandbox of `calls` serves, at any time (before tests change it)."""
    return calls + sum(count for _, count in SHORT_LIVED_CALLS)
