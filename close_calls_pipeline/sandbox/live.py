"""What a live sandbox plays each hour: the calls of that hour and their futures.

Hour `h` (an hour index since the epoch) brings the calls created during the hour before
`h * HOUR_US`; they are a function of (seed, h) alone, and so is each one's future: the hours
at which it is edited and the hour at which it is deleted (when it leaves the window, or
earlier for the short-lived ones). So the state at any time is the same however the clock got
there, and a store that starts at time T only plays the hours whose calls it can still serve or
still has Event Log entries for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from close_calls_pipeline.sandbox.clock import (
    EARLY_EDIT_HOURS,
    EARLY_EDIT_SHARE,
    EDITS_PER_CALL,
    HOUR_US,
    RETENTION_US,
    SHORT_LIVED_CALLS,
    spread,
)
from close_calls_pipeline.sandbox.data import CallFactory
from close_calls_pipeline.sandbox.people import make_id


@dataclass(frozen=True, slots=True)
class PlannedCall:
    call: dict
    rtx: bytes | None
    vtx: bytes | None
    delete_after_hours: int  # its age when it is deleted
    edit_after_hours: tuple[int, ...]  # its ages when it is edited


def hours_to_replay(window_hours: int) -> int:
    """Hours a live store plays before its start: every hour whose calls are still in the window
    or were deleted within the Event Log's retention."""
    return window_hours + RETENTION_US // HOUR_US


def calls_of_hour(
    factory: CallFactory, seed: int, hour: int, calls: int, window_hours: int
) -> list[PlannedCall]:
    """The calls hour `hour` brings: `calls` spread evenly over every `window_hours`, each
    deleted when it leaves the window, then the short-lived ones."""
    rng = random.Random(f"hour:{seed}:{hour}")
    lifetimes = [window_hours] * spread(hour, calls, window_hours)
    for age, count in SHORT_LIVED_CALLS:
        lifetimes += [age] * spread(hour, count, age)
    start_us = (hour - 1) * HOUR_US
    planned = []
    for lifetime in lifetimes:
        call_id = make_id(rng, "acti_")
        created_us = start_us + int(rng.random() * HOUR_US)
        call, rtx, vtx = factory.make_call(rng, call_id, created_us, hour * HOUR_US)
        planned.append(PlannedCall(call, rtx, vtx, lifetime, _edit_ages(rng, lifetime)))
    return planned


def _edit_ages(rng: random.Random, lifetime: int) -> tuple[int, ...]:
    """Ages (hours, >= 1, below `lifetime`) at which a call is edited: EDITS_PER_CALL on average,
    most of them in its first days."""
    if lifetime <= 1:
        return ()
    rnd = rng.random
    n = int(rnd() * (2 * EDITS_PER_CALL + 1))
    early = min(EARLY_EDIT_HOURS, lifetime - 1)
    return tuple(
        1 + int(rnd() * (early if rnd() < EARLY_EDIT_SHARE else lifetime - 1)) for _ in range(n)
    )
