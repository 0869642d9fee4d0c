"""The sandbox's Event Log, as Close keeps it: entries newest first, kept 30 days, rapid updates
of one object merged into one entry, timestamps without offset, cursor paging."""

from __future__ import annotations

import bisect

import orjson

from close_calls_pipeline.sandbox.clock import CONSOLIDATION_US, RETENTION_US, iso_naive
from close_calls_pipeline.sandbox.records import dumps


class Event:
    __slots__ = (
        "action",
        "body",
        "changed_fields",
        "data",
        "dc",
        "du",
        "id",
        "lead_id",
        "object_id",
        "previous_data",
        "user_id",
        "visible_us",
    )

    def key(self) -> tuple[int, str]:
        return (self.du, self.id)


class EventLog:
    """Events of calls, sorted by (date_updated, id)."""

    def __init__(self, organization_id: str):
        self.organization_id = organization_id
        self._keys: list[tuple[int, str]] = []
        self._evs: list[Event] = []
        self._last_update: dict[str, Event] = {}

    def add(
        self,
        event_id: str,
        now: int,
        visible_us: int,
        action: str,
        rec_id: str,
        lead_id,
        user_id,
        changed: list[str],
        data: bytes | None,
        previous: dict,
    ) -> None:
        """Write an event at `now` (an update within a minute of the object's last one is merged
        into it); it is listed from `visible_us` on."""
        if action == "updated":
            ev = self._last_update.get(rec_id)
            if ev is not None and now - ev.du <= CONSOLIDATION_US and ev.du >= now - RETENTION_US:
                self._unlink(ev)
                for k in changed:
                    if k not in ev.changed_fields:
                        ev.changed_fields.append(k)
                        if k in previous:
                            ev.previous_data[k] = previous[k]
                ev.data = data
                ev.du = now
                ev.visible_us = visible_us
                ev.body = self._body(ev)
                self._link(ev)
                return
        ev = Event()
        ev.id = event_id
        ev.dc = now
        ev.du = now
        ev.object_id = rec_id
        ev.lead_id = lead_id
        ev.user_id = user_id
        ev.action = action
        ev.changed_fields = list(changed)
        ev.data = data
        ev.previous_data = previous
        ev.visible_us = visible_us
        ev.body = self._body(ev)
        self._link(ev)
        if action == "updated":
            self._last_update[rec_id] = ev
        elif action == "deleted":
            self._last_update.pop(rec_id, None)

    def _body(self, ev: Event) -> bytes:
        return dumps(
            {
                "id": ev.id,
                "date_created": iso_naive(ev.dc),
                "date_updated": iso_naive(ev.du),
                "object_type": "activity.call",
                "object_id": ev.object_id,
                "lead_id": ev.lead_id,
                "user_id": ev.user_id,
                "organization_id": self.organization_id,
                "action": ev.action,
                "changed_fields": ev.changed_fields,
                "data": None if ev.data is None else orjson.Fragment(ev.data),
                "previous_data": ev.previous_data,
                "meta": {},
            }
        )

    def _link(self, ev: Event) -> None:
        k = ev.key()
        pos = bisect.bisect_left(self._keys, k)
        self._keys.insert(pos, k)
        self._evs.insert(pos, ev)

    def _unlink(self, ev: Event) -> None:
        pos = bisect.bisect_left(self._keys, ev.key())
        if pos < len(self._evs) and self._evs[pos] is ev:
            del self._keys[pos]
            del self._evs[pos]

    def prune(self, now: int) -> None:
        """Forget the events past retention."""
        cut = bisect.bisect_left(self._keys, (now - RETENTION_US, ""))
        if cut:
            for ev in self._evs[:cut]:
                if self._last_update.get(ev.object_id) is ev:
                    del self._last_update[ev.object_id]
            del self._keys[:cut]
            del self._evs[:cut]

    def query(
        self,
        now: int,
        *,
        object_type=None,
        action=None,
        object_id=None,
        lead_id=None,
        user_id=None,
        du_gt=None,
        du_gte=None,
        du_lt=None,
        du_lte=None,
        after: tuple[int, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[bytes], tuple[int, str] | None]:
        """Events newest first (retention applied), strictly after the cursor key `after`.

        Returns serialized events and the key of the last one when more follow, else None.
        """
        floor = now - RETENTION_US
        if du_gte is not None:
            floor = max(floor, du_gte)
        if du_gt is not None:
            floor = max(floor, du_gt + 1)
        hi = len(self._keys)
        if after is not None:
            hi = min(hi, bisect.bisect_left(self._keys, after))
        if du_lt is not None:
            hi = min(hi, bisect.bisect_left(self._keys, (du_lt, "")))
        if du_lte is not None:
            hi = min(hi, bisect.bisect_left(self._keys, (du_lte + 1, "")))
        out: list[bytes] = []
        last = None
        more = False
        for pos in range(hi - 1, -1, -1):
            ev = self._evs[pos]
            if ev.du < floor:
                break
            if ev.visible_us > now:
                continue
            if object_type is not None and object_type != "activity.call":
                break
            if action is not None and ev.action != action:
                continue
            if object_id is not None and ev.object_id != object_id:
                continue
            if lead_id is not None and ev.lead_id != lead_id:
                continue
            if user_id is not None and ev.user_id != user_id:
                continue
            if len(out) >= limit:
                more = True
                break
            out.append(ev.body)
            last = ev.key()
        return out, (last if more else None)

    def all(self, now: int) -> list[dict]:
        """Every retained event, newest first, decoded."""
        floor = now - RETENTION_US
        return [orjson.loads(ev.body) for ev in reversed(self._evs) if ev.du >= floor]
