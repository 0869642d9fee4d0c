"""Client-side pacing for Close's per-key, per-endpoint-group rate limits.

Close answers every request with ``RateLimit: limit=N, remaining=M, reset=S`` (S in seconds, may
be fractional) and enforces the limit per endpoint group. One :class:`GroupPacer` per group is
shared by every thread of a client and holds new requests *before* the limit is reached:

* Each answer tells the server's count at the instant it counted that request: ``limit -
  remaining``. Every request that has completed was counted no later than the completed request
  counted last, so within one server window ``limit - min(remaining seen)`` covers all of them;
  requests still in flight may be counted any time. Hence the estimate
  ``used = (limit - min remaining seen in this window) + in_flight``, an upper bound that does not
  depend on the order in which requests reach the server or their answers come back.
* ``arrival + reset`` is an upper bound of the window's end (the header was produced before it
  arrived); the smallest one seen is kept. Answers whose end lies about a window later start a
  new window; answers from an earlier window are ignored. Once the window's end has passed the
  estimate is just the requests in flight (they may be counted in the new window).
* When the tokens left are no more than the requests in flight, request starts are spaced by
  ``time_to_reset / tokens_left``; with no token left the group waits for the reset.
* A 429 pauses the whole group for the server's wait (:meth:`GroupPacer.pause`).

Until the first answer of a group arrives, one request at a time is sent (the limit is unknown).
An answer without a ``RateLimit`` header makes the limit unknown again: only 429 pauses apply.
"""

import re
import threading
import time
from dataclasses import dataclass

_FIELD_RE = re.compile(r"\b(limit|remaining|reset)\s*=\s*([0-9]+(?:\.[0-9]*)?)", re.IGNORECASE)

# Added to each reset-derived deadline, to absorb timer and clock granularity.
_SAFETY_S = 0.005
# While the limit is exhausted but the window end is unknown, re-check this often.
_POLL_S = 0.05


@dataclass(frozen=True)
class RateLimitInfo:
    limit: int
    remaining: int
    reset: float


def parse_ratelimit(value: str | None) -> RateLimitInfo | None:
    """Parse ``limit=N, remaining=M, reset=S``; None when absent or incomplete."""
    if not value:
        return None
    fields = {k.lower(): v for k, v in _FIELD_RE.findall(value)}
    try:
        return RateLimitInfo(
            limit=int(float(fields["limit"])),
            remaining=int(float(fields["remaining"])),
            reset=max(0.0, float(fields["reset"])),
        )
    except (KeyError, ValueError):
        return None


class GroupPacer:
    """Shared, thread-safe pacer of one endpoint group."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._limit: int | None = None
        self._min_remaining: int | None = None  # lowest `remaining` seen in the current window
        self._window_end: float | None = None  # monotonic upper bound of the window's end
        self._rolled = True  # the window ended (or none is known): only in-flight requests count
        self._window_len = 0.0  # longest reset seen, an estimate of the window's length
        self._in_flight = 0
        self._blocked_until = 0.0
        self._probing = True  # until the first answer: one request at a time (limit unknown)
        self._last_start = float("-inf")

    # -- internals (call with the lock held) --------------------------------------------------
    def _delay(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if not self._rolled and self._window_end is not None and now >= self._window_end:
            self._rolled = True
            self._min_remaining = None
        limit = self._limit
        if limit is None:
            # Nothing known: send one request and learn the limit from its answer, rather than
            # a burst of pool_size requests that may exceed a small limit.
            return _POLL_S if self._probing and self._in_flight else 0.0
        used = self._in_flight
        if self._min_remaining is not None:
            used += limit - self._min_remaining
        tokens = limit - used
        if tokens <= 0:
            if self._rolled or self._window_end is None:
                return _POLL_S  # an answer (which notifies) will tell more
            return self._window_end - now
        if not self._rolled and self._window_end is not None and tokens <= self._in_flight:
            spacing = (self._window_end - now) / tokens
            next_start = self._last_start + spacing
            if next_start > now:
                return next_start - now
        return 0.0

    def _observe(self, info: RateLimitInfo, now: float) -> None:
        self._limit = max(1, info.limit)
        self._window_len = max(self._window_len, info.reset)
        end = now + info.reset + _SAFETY_S
        tolerance = max(0.5 * self._window_len, 0.1)
        current = self._window_end
        if current is None or end > current + tolerance:  # a later window
            self._window_end = end
            self._min_remaining = info.remaining
            self._rolled = False
        elif end >= current - tolerance and not self._rolled:  # this window
            self._window_end = min(current, end)
            if self._min_remaining is None or info.remaining < self._min_remaining:
                self._min_remaining = info.remaining
        # else: from an earlier window, or from the one that just ended: nothing to learn

    # -- API -----------------------------------------------------------------------------------
    def acquire(self) -> float:
        """Block until a request may start; returns the seconds waited."""
        started = time.monotonic()
        with self._cond:
            while True:
                now = time.monotonic()
                delay = self._delay(now)
                if delay <= 0:
                    break
                self._cond.wait(delay)
            self._in_flight += 1
            self._last_start = now
            return now - started

    def release(self, info: RateLimitInfo | None, answered: bool = True) -> None:
        """A request finished: ``answered`` (an HTTP answer came back, ``info`` from its
        RateLimit header) or not (a network error)."""
        with self._cond:
            self._in_flight -= 1
            if answered:
                self._probing = False
                if info is not None:
                    self._observe(info, time.monotonic())
                else:
                    self._limit = None  # the server stopped telling: do not pace blindly
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """A 429: hold the whole group for ``seconds``."""
        with self._cond:
            until = time.monotonic() + max(0.0, seconds)
            self._blocked_until = max(self._blocked_until, until)
            self._cond.notify_all()

    def snapshot(self) -> dict:
        with self._cond:
            now = time.monotonic()
            return {
                "limit": self._limit,
                "min_remaining": self._min_remaining,
                "in_flight": self._in_flight,
                "window_end_in": None if self._window_end is None else self._window_end - now,
                "rolled": self._rolled,
            }


class RateLimiter:
    """One :class:`GroupPacer` per endpoint group (``activity``, ``event``, ``other``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, GroupPacer] = {}

    def group(self, name: str) -> GroupPacer:
        pacer = self._groups.get(name)
        if pacer is None:
            with self._lock:
                pacer = self._groups.setdefault(name, GroupPacer(name))
        return pacer


def endpoint_group(path: str) -> str:
    """The rate-limit group of an API path (relative to the base URL)."""
    if path.startswith("/activity/"):
        return "activity"
    if path.startswith("/event/"):
        return "event"
    return "other"
