"""The sandbox's state: calls, reference data, the event log and a virtual clock.

Per call the store keeps a compact `_Rec` (id, date_created as integer microseconds,
activity_at, lead/user/contact ids, the set of its keys) and the call's JSON as pre-serialized
orjson bytes without transcripts; transcripts are kept as separate serialized blobs (most of them
shared from a small pool) and spliced in when a request names them in `_fields`.
Calls live in a list sorted by (date_created, id), so `date_created` windows are two bisects.
"""

from __future__ import annotations

import bisect
import gc
import random
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from close_calls_pipeline.core import config
from close_calls_pipeline.sandbox.data import (
    ANCHOR,
    REC_VARIANTS,
    US_PER_DAY,
    US_PER_S,
    VM_VARIANTS,
    CallFactory,
    dt_to_us,
    iso,
    iso_naive,
    make_id,
    make_note,
    parse_ts,
    transcript_fits,
    transcript_limits,
    us_to_dt,
)

RETENTION_US = 30 * US_PER_DAY
CONSOLIDATION_US = 60 * US_PER_S
HOUR_US = 3600 * US_PER_S
# Live mode: every hour since ANCHOR adds this many calls (and updates two, deletes one in ten
# hours), so a live sandbox serves its seeded history plus ~48 calls a day since 2026-01-01.
LIVE_NEW_CALLS_PER_HOUR = 2
# fields that decide whether a call may carry a transcript, and how long it may be
TRANSCRIPT_RULE_FIELDS = frozenset(
    {"disposition", "duration", "recording_url", "voicemail_url", "voicemail_duration"}
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def _dumps(obj, option: int = 0) -> bytes:
    """orjson.dumps, copied to an exact-size bytes: orjson's own result keeps a ~16 KB
    buffer, which would multiply the memory of a store holding many small documents."""
    return bytes(memoryview(orjson.dumps(obj, option=option)))


_KEYSETS: dict[frozenset, frozenset] = {}


def _intern_keys(keys: Iterable[str]) -> frozenset:
    fs = frozenset(keys)
    return _KEYSETS.setdefault(fs, fs)


class _Rec:
    """One stored call."""

    __slots__ = ("aa", "body", "contact_id", "dc", "id", "keys", "lead_id", "rtx", "user_id", "vtx")

    def __init__(self, cid, dc, aa, lead_id, user_id, contact_id, keys, body, rtx, vtx):
        self.id = cid
        self.dc = dc
        self.aa = aa
        self.lead_id = lead_id
        self.user_id = user_id
        self.contact_id = contact_id
        self.keys = keys
        self.body = body
        self.rtx = rtx
        self.vtx = vtx

    def render(self, fields: frozenset | set | None) -> bytes:
        """The call as the API serves it for this `_fields` set (None = no `_fields`)."""
        if fields is None:
            return self.body
        if self.keys <= fields:
            body = self.body
        else:
            d = orjson.loads(self.body)
            body = orjson.dumps({k: v for k, v in d.items() if k in fields})  # transient
        rtx = self.rtx if "recording_transcript" in fields else None
        vtx = self.vtx if "voicemail_transcript" in fields else None
        if rtx is None and vtx is None:
            return body
        parts = [body[:-1]]
        sep = b"," if len(body) > 2 else b""
        if rtx is not None:
            parts += [sep, b'"recording_transcript":', rtx]
            sep = b","
        if vtx is not None:
            parts += [sep, b'"voicemail_transcript":', vtx]
        parts.append(b"}")
        return b"".join(parts)

    def full(self) -> dict:
        d = orjson.loads(self.body)
        if self.rtx is not None:
            d["recording_transcript"] = orjson.loads(self.rtx)
        if self.vtx is not None:
            d["voicemail_transcript"] = orjson.loads(self.vtx)
        return d


class _RawRec(_Rec):
    """A call served as given bytes (which need not be JSON), whatever `_fields` asks for."""

    __slots__ = ("shadowed",)

    def render(self, fields: frozenset | set | None) -> bytes:
        return self.body

    def full(self) -> dict:
        raise ValueError(f"call {self.id} is served as raw bytes")


class _Event:
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


class BadRequest(ValueError):
    """A request the API answers with 400; the message is the `error` text."""


def _tx_bytes(value) -> bytes | None:
    """A transcript value for update_call: None, a JSON-able value, or pre-serialized bytes."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return _dumps(value)


def _in_bounds(v: int, b: dict) -> bool:
    return not (
        ("gt" in b and v <= b["gt"])
        or ("gte" in b and v < b["gte"])
        or ("lt" in b and v >= b["lt"])
        or ("lte" in b and v > b["lte"])
    )


def _str_or_none(v) -> str | None:
    return v if isinstance(v, str) else None


class SandboxStore:
    """Deterministic Close data with a virtual clock. Thread-safe (one re-entrant lock)."""

    def __init__(
        self,
        calls: int = config.SANDBOX_CALLS,
        seed: int = 1,
        start: datetime | None = None,
        history_days: int = 180,
        live: bool = False,
        organization_id: str | None = None,
        organization_name: str | None = None,
    ):
        """`organization_id` / `organization_name`: the organization `/me/` answers for and every
        record carries (default: derived from the seed), so that tests can serve two."""
        self.seed = seed
        self.live = live
        self.history_days = history_days
        self.lock = threading.RLock()
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        start_us = dt_to_us(start)
        self._now_us = start_us
        self._rng = random.Random(f"store:{seed}")
        self._factory = CallFactory(
            seed, n_leads=max(20, calls // 5), org_id=organization_id or f"orga_sandbox_{seed}"
        )
        self.organization_id = self._factory.org_id
        self.organization_name = organization_name or f"Sandbox (seed {seed})"
        self.users: list[dict] = self._factory.users
        self.outcomes: list[dict] = self._factory.outcomes
        self.deleted_outcome_ids: list[str] = list(self._factory.deleted_outcome_ids)
        self._dcs: list[int] = []
        self._recs: list[_Rec] = []
        self._by_id: dict[str, _Rec] = {}
        self.deleted_ids: set[str] = set()
        self._ev_keys: list[tuple[int, str]] = []
        self._evs: list[_Event] = []
        self._last_update_ev: dict[str, _Event] = {}
        self._record_events = True
        # Events written (or consolidated) while this is set become visible to /event/ only this
        # many seconds after their date_updated (0: at once). Close writes some entries late;
        # this is how a test makes some of them late while others are on time.
        self.event_delay_s = 0.0
        self._raw_counter = 0
        self._filter_cache: dict = {}
        self.version = 0  # bumped on every mutation (cache key for filtered listings)
        history_end = dt_to_us(ANCHOR) if live else start_us
        self._build_history(calls, history_end, history_days)
        if live:
            self._tick_done = -1  # index of the last applied hourly tick
            self._wall0 = time.monotonic()
            self._start_us = start_us
            self._offset_us = 0
            self._now_us = max(history_end, 0)
            self._catch_up(start_us)

    # ------------------------------------------------------------------ clock

    @property
    def now(self) -> datetime:
        return us_to_dt(self._now_us)

    @property
    def now_us(self) -> int:
        return self._now_us

    def advance(self, seconds: float) -> None:
        """Move the clock forward (in live mode: shift it ahead of wall time, applying ticks)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            if self.live:
                self._offset_us += round(seconds * US_PER_S)
                self.sync()
            else:
                self._now_us += round(seconds * US_PER_S)
                self.version += 1

    def sync(self) -> None:
        """Live mode: catch the clock (and the hourly mutation ticks) up to wall time."""
        if not self.live:
            return
        target = self._start_us + self._offset_us + int((time.monotonic() - self._wall0) * US_PER_S)
        with self.lock:
            if target > self._now_us:
                self._catch_up(target)

    def _catch_up(self, target_us: int) -> None:
        anchor = dt_to_us(ANCHOR)
        last_tick = (target_us - anchor) // HOUR_US
        first_recorded = target_us - RETENTION_US
        while self._tick_done < last_tick:
            tick = self._tick_done + 1
            tick_us = anchor + tick * HOUR_US
            self._now_us = max(tick_us, self._now_us)
            self._record_events = tick_us >= first_recorded
            rng = random.Random(self.seed * 1_000_003 + tick)
            deleted = 1 if rng.random() < 0.1 else 0
            self.mutate_random(
                rng, new=LIVE_NEW_CALLS_PER_HOUR, updated=2, deleted=deleted, old_share=0.3
            )
            self._tick_done = tick
        self._record_events = True
        self._now_us = max(self._now_us, target_us)
        self._prune_events()
        self.version += 1

    # ------------------------------------------------------------------ building

    def _build_history(self, n: int, end_us: int, days: int) -> None:
        rng = random.Random(f"history:{self.seed}")
        span = max(1, days * US_PER_DAY)
        rnd = rng.random
        dcs = sorted(end_us - 1 - int(rnd() * span) for _ in range(n))
        make = self._factory.make_call
        dumps = _dumps
        recs = []
        gc_was_enabled = gc.isenabled()
        gc.disable()  # hundreds of thousands of acyclic objects: the cyclic GC only costs time
        try:
            self._generate(rng, dcs, end_us, recs, make, dumps)
        finally:
            if gc_was_enabled:
                gc.enable()
        recs.sort(key=lambda r: (r.dc, r.id))
        self._recs = recs
        self._dcs = [r.dc for r in recs]
        self._by_id = {r.id: r for r in recs}
        self.version += 1

    def _generate(self, rng, dcs, end_us, recs, make, dumps) -> None:
        for dc in dcs:
            cid = make_id(rng, "acti_")
            call, rtx, vtx = make(rng, cid, dc, end_us)
            recs.append(self._rec_from_call(call, rtx, vtx, dumps(call)))

    @staticmethod
    def _rec_from_call(call: dict, rtx, vtx, body: bytes, sort_us: int | None = None) -> _Rec:
        dc = sort_us
        if dc is None:
            dc = parse_ts(call["date_created"])
        aa_s = call.get("activity_at")
        aa = None
        if isinstance(aa_s, str):
            try:
                aa = parse_ts(aa_s)
            except ValueError:
                aa = None
        return _Rec(
            call["id"],
            dc,
            aa,
            _str_or_none(call.get("lead_id")),
            _str_or_none(call.get("user_id")),
            _str_or_none(call.get("contact_id")),
            _intern_keys(call.keys()),
            body,
            rtx,
            vtx,
        )

    # ------------------------------------------------------------------ index maintenance

    def _insert(self, rec: _Rec) -> None:
        lo = bisect.bisect_left(self._dcs, rec.dc)
        hi = bisect.bisect_right(self._dcs, rec.dc, lo)
        pos = lo
        while pos < hi and self._recs[pos].id < rec.id:
            pos += 1
        self._dcs.insert(pos, rec.dc)
        self._recs.insert(pos, rec)
        self._by_id[rec.id] = rec

    def _remove(self, rec: _Rec) -> None:
        lo = bisect.bisect_left(self._dcs, rec.dc)
        hi = bisect.bisect_right(self._dcs, rec.dc, lo)
        for pos in range(lo, hi):
            if self._recs[pos] is rec:
                del self._dcs[pos]
                del self._recs[pos]
                break
        self._by_id.pop(rec.id, None)

    # ------------------------------------------------------------------ events

    def _add_event(
        self,
        action: str,
        rec_id: str,
        lead_id,
        user_id,
        changed: list[str],
        data: bytes | None,
        previous: dict,
    ) -> None:
        # draw the id first, always: the rng sequence must not depend on whether events are
        # recorded (live mode skips recording for ticks outside the retention window)
        new_id = make_id(self._rng, "ev_", 22)
        if not self._record_events:
            return
        now = self._now_us
        if action == "updated":
            ev = self._last_update_ev.get(rec_id)
            if ev is not None and now - ev.du <= CONSOLIDATION_US and ev.du >= now - RETENTION_US:
                self._unlink_event(ev)
                for k in changed:
                    if k not in ev.changed_fields:
                        ev.changed_fields.append(k)
                        if k in previous:
                            ev.previous_data[k] = previous[k]
                ev.data = data
                ev.du = now
                ev.visible_us = now + round(self.event_delay_s * US_PER_S)
                ev.body = self._event_body(ev)
                self._link_event(ev)
                return
        ev = _Event()
        ev.id = new_id
        ev.dc = now
        ev.du = now
        ev.object_id = rec_id
        ev.lead_id = lead_id
        ev.user_id = user_id
        ev.action = action
        ev.changed_fields = list(changed)
        ev.data = data
        ev.previous_data = previous
        ev.visible_us = now + round(self.event_delay_s * US_PER_S)
        ev.body = self._event_body(ev)
        self._link_event(ev)
        if action == "updated":
            self._last_update_ev[rec_id] = ev
        elif action == "deleted":
            self._last_update_ev.pop(rec_id, None)

    def _event_body(self, ev: _Event) -> bytes:
        return _dumps(
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

    def _link_event(self, ev: _Event) -> None:
        k = ev.key()
        pos = bisect.bisect_left(self._ev_keys, k)
        self._ev_keys.insert(pos, k)
        self._evs.insert(pos, ev)

    def _unlink_event(self, ev: _Event) -> None:
        pos = bisect.bisect_left(self._ev_keys, ev.key())
        if pos < len(self._evs) and self._evs[pos] is ev:
            del self._ev_keys[pos]
            del self._evs[pos]

    def _prune_events(self) -> None:
        cut = bisect.bisect_left(self._ev_keys, (self._now_us - RETENTION_US, ""))
        if cut:
            for ev in self._evs[:cut]:
                if self._last_update_ev.get(ev.object_id) is ev:
                    del self._last_update_ev[ev.object_id]
            del self._ev_keys[:cut]
            del self._evs[:cut]

    def events(
        self,
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
        with self.lock:
            floor = self._now_us - RETENTION_US
            if du_gte is not None:
                floor = max(floor, du_gte)
            if du_gt is not None:
                floor = max(floor, du_gt + 1)
            hi = len(self._ev_keys)
            if after is not None:
                hi = min(hi, bisect.bisect_left(self._ev_keys, after))
            if du_lt is not None:
                hi = min(hi, bisect.bisect_left(self._ev_keys, (du_lt, "")))
            if du_lte is not None:
                hi = min(hi, bisect.bisect_left(self._ev_keys, (du_lte + 1, "")))
            out: list[bytes] = []
            last = None
            more = False
            for pos in range(hi - 1, -1, -1):
                ev = self._evs[pos]
                if ev.du < floor:
                    break
                if ev.visible_us > self._now_us:
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

    def all_events(self) -> list[dict]:
        """Every retained event, newest first, decoded (for tests)."""
        with self.lock:
            floor = self._now_us - RETENTION_US
            return [orjson.loads(ev.body) for ev in reversed(self._evs) if ev.du >= floor]

    # ------------------------------------------------------------------ reads

    def get(self, call_id: str) -> _Rec | None:
        return self._by_id.get(call_id)

    def window(self, gt=None, gte=None, lt=None, lte=None) -> tuple[int, int]:
        """Positions [lo, hi) of the sorted list inside the date_created bounds (us)."""
        dcs = self._dcs
        lo, hi = 0, len(dcs)
        if gte is not None:
            lo = max(lo, bisect.bisect_left(dcs, gte))
        if gt is not None:
            lo = max(lo, bisect.bisect_right(dcs, gt))
        if lt is not None:
            hi = min(hi, bisect.bisect_left(dcs, lt))
        if lte is not None:
            hi = min(hi, bisect.bisect_right(dcs, lte))
        return lo, max(lo, hi)

    def query_calls(
        self,
        *,
        dc: dict | None = None,
        aa: dict | None = None,
        ids: list[str] | None = None,
        lead_ids: set | None = None,
        user_ids: set | None = None,
        contact_ids: set | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> tuple[list[_Rec], bool]:
        """One page of calls, newest date_created first (ties: id descending).

        `dc` / `aa` map "gt"/"gte"/"lt"/"lte" to microseconds.
        """
        with self.lock:
            lo, hi = self.window(**(dc or {}))
            filtered = bool(
                aa or lead_ids is not None or user_ids is not None or contact_ids is not None
            )
            if ids is None and not filtered:
                start = hi - 1 - skip
                stop = max(lo - 1, start - limit)
                recs = self._recs
                page = [recs[i] for i in range(start, stop, -1)]
                return page, stop > lo - 1
            if ids is not None:
                cands = []
                seen = set()
                for cid in ids:
                    r = self._by_id.get(cid)
                    if r is not None and cid not in seen:
                        seen.add(cid)
                        cands.append(r)
                if dc:
                    cands = [r for r in cands if _in_bounds(r.dc, dc)]
                cands.sort(key=lambda r: (r.dc, r.id), reverse=True)
                matches = [r for r in cands if self._match(r, aa, lead_ids, user_ids, contact_ids)]
            else:
                key = (
                    lo,
                    hi,
                    tuple(sorted((aa or {}).items())),
                    tuple(sorted(lead_ids)) if lead_ids is not None else None,
                    tuple(sorted(user_ids)) if user_ids is not None else None,
                    tuple(sorted(contact_ids)) if contact_ids is not None else None,
                    self.version,
                    len(self._recs),
                )
                matches = self._filter_cache.get(key)
                if matches is None:
                    recs = self._recs
                    matches = [
                        recs[i]
                        for i in range(hi - 1, lo - 1, -1)
                        if self._match(recs[i], aa, lead_ids, user_ids, contact_ids)
                    ]
                    if len(self._filter_cache) > 16:
                        self._filter_cache.clear()
                    self._filter_cache[key] = matches
            return matches[skip : skip + limit], len(matches) > skip + limit

    @staticmethod
    def _match(r: _Rec, aa, lead_ids, user_ids, contact_ids) -> bool:
        if aa and (r.aa is None or not _in_bounds(r.aa, aa)):
            return False
        return not (
            (lead_ids is not None and r.lead_id not in lead_ids)
            or (user_ids is not None and r.user_id not in user_ids)
            or (contact_ids is not None and r.contact_id not in contact_ids)
        )

    def __len__(self) -> int:
        return len(self._recs)

    def truth(self) -> dict[str, dict]:
        """Every live call id → the full API object, transcripts included when present (calls
        served as raw bytes, see `put_raw_call_bytes`, are left out: they have no object)."""
        with self.lock:
            return {r.id: r.full() for r in self._recs if not isinstance(r, _RawRec)}

    def raw_call_ids(self) -> set[str]:
        """Ids of the calls served as raw bytes."""
        with self.lock:
            return {r.id for r in self._recs if isinstance(r, _RawRec)}

    def call_ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self._recs]

    # ------------------------------------------------------------------ mutations

    def add_calls(self, n: int, *, at: datetime | None = None) -> list[str]:
        """New calls created at `at` (default: now); each writes a `created` event."""
        with self.lock:
            at_us = self._now_us if at is None else dt_to_us(at)
            ids = []
            for _ in range(n):
                cid = make_id(self._rng, "acti_")
                call, rtx, vtx = self._factory.make_call(
                    self._rng, cid, at_us, max(at_us, self._now_us)
                )
                # keep the created time exact (make_call may round it to ms / s)
                call["date_created"] = iso(at_us)
                if call["activity_at"] is not None:
                    call["activity_at"] = iso(max(0, at_us - call["duration"] * US_PER_S))
                call["date_updated"] = iso(max(at_us, self._now_us) if at is not None else at_us)
                body = _dumps(call)
                rec = self._rec_from_call(call, rtx, vtx, body, sort_us=at_us)
                self._insert(rec)
                ids.append(cid)
                self._add_event("created", cid, rec.lead_id, rec.user_id, [], body, {})
            self.version += 1
            return ids

    def update_call(
        self,
        call_id: str,
        *,
        note=UNSET,
        outcome_id=UNSET,
        recording_transcript=UNSET,
        voicemail_transcript=UNSET,
        **other_fields,
    ) -> None:
        """Set fields, bump date_updated to now, write an `updated` event (consolidated).

        Transcripts passed here are stored verbatim, whatever the call (tests inject odd ones on
        purpose, as with `put_raw_call`); the sandbox's own mutations only pass transcripts that
        fit their call. When other fields change what a call may carry (disposition, duration,
        recording or voicemail), a stored transcript that no longer fits is replaced by one that
        does, or removed when the call may no longer have one.
        """
        with self.lock:
            rec = self._by_id.get(call_id)
            if rec is None:
                raise KeyError(call_id)
            call = orjson.loads(rec.body)
            changes = dict(other_fields)
            if note is not UNSET:
                changes["note"] = note
                if "note_html" not in changes:
                    changes["note_html"] = None if note is None else f"<p>{note}</p>"
            if outcome_id is not UNSET:
                changes["outcome_id"] = outcome_id
            changed: list[str] = []
            previous: dict = {}
            for k, v in changes.items():
                previous[k] = call.get(k)
                call[k] = v
                changed.append(k)
            rtx, vtx = rec.rtx, rec.vtx
            if recording_transcript is not UNSET:
                rtx = _tx_bytes(recording_transcript)
                changed.append("recording_transcript")
            if voicemail_transcript is not UNSET:
                vtx = _tx_bytes(voicemail_transcript)
                changed.append("voicemail_transcript")
            if not TRANSCRIPT_RULE_FIELDS.isdisjoint(changes) and (rtx or vtx) is not None:
                rec_limit, vm_limit = transcript_limits(call)
                if recording_transcript is UNSET and not transcript_fits(rtx, rec_limit):
                    rtx = self._refit("recording", call, rec_limit)
                    changed.append("recording_transcript")
                if voicemail_transcript is UNSET and not transcript_fits(vtx, vm_limit):
                    vtx = self._refit("voicemail", call, vm_limit)
                    changed.append("voicemail_transcript")
            if "date_updated" not in changes:
                previous["date_updated"] = call.get("date_updated")
                call["date_updated"] = iso(self._now_us)
                changed.append("date_updated")
            if "id" in changes:
                raise ValueError("update_call cannot change a call's id")
            body = _dumps(call)
            new = self._rec_from_call(call, rtx, vtx, body, sort_us=rec.dc)
            if "date_created" in changes:
                try:
                    new.dc = parse_ts(call["date_created"])
                except (TypeError, ValueError):
                    pass
            self._remove(rec)
            self._insert(new)
            self._add_event("updated", call_id, new.lead_id, new.user_id, changed, body, previous)
            self.version += 1

    def _refit(self, kind: str, call: dict, limit: float | None) -> bytes | None:
        if limit is None:
            return None
        return self._factory.transcripts.get(kind, call.get("user_id"), limit, 0)

    def delete_call(self, call_id: str) -> None:
        with self.lock:
            rec = self._by_id.get(call_id)
            if rec is None:
                raise KeyError(call_id)
            self._remove(rec)
            self.deleted_ids.add(call_id)
            previous = {"id": call_id} if isinstance(rec, _RawRec) else orjson.loads(rec.body)
            self._add_event("deleted", call_id, rec.lead_id, rec.user_id, [], None, previous)
            self.version += 1

    def put_raw_call(self, record: dict, at: datetime | None = None) -> str:
        """Store `record` verbatim (it may be malformed); served by the list and id endpoints.

        Its transcript keys, whatever their shape, are served only when named in `_fields`.
        The sort position is `at`, else its date_created if that parses, else now. Returns the
        id it is stored under (a synthetic `raw_N` when the record has no string id).
        """
        with self.lock:
            record = dict(record)
            rtx = vtx = None
            if "recording_transcript" in record:
                v = record.pop("recording_transcript")
                rtx = None if v is None else _dumps(v)
            if "voicemail_transcript" in record:
                v = record.pop("voicemail_transcript")
                vtx = None if v is None else _dumps(v)
            cid = record.get("id")
            if not isinstance(cid, str):
                self._raw_counter += 1
                cid = f"raw_{self._raw_counter}"
            if at is not None:
                sort_us = dt_to_us(at)
            else:
                try:
                    sort_us = parse_ts(record.get("date_created"))
                except (TypeError, ValueError, AttributeError):
                    sort_us = self._now_us
            body = _dumps(record, orjson.OPT_NON_STR_KEYS)
            aa = None
            try:
                aa = parse_ts(record.get("activity_at"))
            except (TypeError, ValueError, AttributeError):
                pass
            rec = _Rec(
                cid,
                sort_us,
                aa,
                _str_or_none(record.get("lead_id")),
                _str_or_none(record.get("user_id")),
                _str_or_none(record.get("contact_id")),
                _intern_keys(str(k) for k in record),
                body,
                rtx,
                vtx,
            )
            old = self._by_id.get(cid)
            if old is not None:
                self._remove(old)
            self._insert(rec)
            self.version += 1
            return cid

    def put_raw_call_bytes(
        self, call_id: str, body: bytes, *, at: datetime | None = None, event: bool = False
    ) -> None:
        """Serve call `call_id` as exactly `body` (bytes that need not be JSON: not UTF-8, a lone
        surrogate escape, cut in the middle) by the list and id endpoints, whatever `_fields`
        asks for. It takes the place of the call of that id if there is one (its position in
        date_created order too), else sits at `at` (default now). With `event`, an `updated`
        event carrying `body` as its data is written, as Close would for an edit. `fix_raw_call`
        puts the call back."""
        with self.lock:
            old = self._by_id.get(call_id)
            sort_us = old.dc if old is not None else (self._now_us if at is None else dt_to_us(at))
            rec = _RawRec(
                call_id,
                sort_us,
                None if old is None else old.aa,
                None if old is None else old.lead_id,
                None if old is None else old.user_id,
                None if old is None else old.contact_id,
                frozenset(),
                body,
                None,
                None,
            )
            rec.shadowed = old.shadowed if isinstance(old, _RawRec) else old
            if old is not None:
                self._remove(old)
            self._insert(rec)
            if event:
                self._add_event("updated", call_id, rec.lead_id, rec.user_id, ["note"], body, {})
            self.version += 1

    def fix_raw_call(self, call_id: str) -> None:
        """Serve again the call that `put_raw_call_bytes` replaced, as edited now (an event)."""
        with self.lock:
            rec = self._by_id[call_id]
            if not isinstance(rec, _RawRec) or rec.shadowed is None:
                raise KeyError(f"{call_id} is not a raw call that replaced one")
            self._remove(rec)
            self._insert(rec.shadowed)
            self.update_call(call_id)

    def _pick(self, rng: random.Random, old: bool) -> _Rec | None:
        n = len(self._recs)
        if n == 0:
            return None
        split = bisect.bisect_left(self._dcs, self._now_us - 60 * US_PER_DAY)
        if old and split > 0:
            return self._recs[rng.randrange(split)]
        recent = bisect.bisect_left(self._dcs, self._now_us - 14 * US_PER_DAY)
        if recent < n and not old:
            return self._recs[rng.randrange(recent, n)]
        return self._recs[rng.randrange(n)]

    def mutate_random(
        self,
        rng: random.Random,
        *,
        new: int = 5,
        updated: int = 10,
        deleted: int = 2,
        old_share: float = 0.3,
    ) -> dict:
        """One random round of activity at the current clock; returns the ids touched."""
        with self.lock:
            saved_rng = self._rng
            self._rng = rng
            try:
                created = self.add_calls(new) if new else []
                upd: list[str] = []
                for _ in range(updated):
                    rec = self._pick(rng, rng.random() < old_share)
                    if rec is None:
                        break
                    upd.append(self._random_update(rng, rec))
                dele: list[str] = []
                for _ in range(deleted):
                    rec = self._pick(rng, rng.random() < old_share)
                    if rec is None:
                        break
                    self.delete_call(rec.id)
                    dele.append(rec.id)
            finally:
                self._rng = saved_rng
            return {"created": created, "updated": upd, "deleted": dele}

    def _index_of(self, rec: _Rec) -> int:
        pos = bisect.bisect_left(self._dcs, rec.dc)
        while self._recs[pos] is not rec:
            pos += 1
        return pos

    def _transcript_target(self, rec: _Rec) -> tuple[_Rec | None, tuple]:
        """`rec` if it may carry a transcript, else the nearest call after it that may (within
        64 positions), with its transcript limits."""
        pos, n = self._index_of(rec), len(self._recs)
        for i in range(min(64, n)):
            cand = self._recs[(pos + i) % n]
            if b'"answered"' not in cand.body and b'"vm-left"' not in cand.body:
                continue  # cheap pre-check: neither disposition can carry a transcript
            call = orjson.loads(cand.body)
            limits = transcript_limits(call) if isinstance(call, dict) else (None, None)
            if limits != (None, None):
                return cand, limits
        return None, (None, None)

    def _random_update(self, rng: random.Random, rec: _Rec) -> str:
        """One random edit of `rec` (or, for a transcript change, of a call near it that may
        carry a transcript); returns the id of the call edited."""
        r = rng.random()
        f = self._factory
        if r < 0.35:
            note, note_html = make_note(rng)
            self.update_call(rec.id, note=note, note_html=note_html)
        elif r < 0.55:
            pool = f.custom_outcomes + f.deleted_outcome_ids[:1]
            self.update_call(
                rec.id, outcome_id=pool[rng.randrange(len(pool))] if rng.random() < 0.85 else None
            )
        elif r < 0.85:  # a transcript arrives, changes or is deleted after the call exists
            target, (rec_limit, vm_limit) = self._transcript_target(rec)
            if target is None:
                self.update_call(rec.id)
                return rec.id
            voicemail = vm_limit is not None
            kind = "voicemail" if voicemail else "recording"
            old = target.vtx if voicemail else target.rtx
            limit = vm_limit if voicemail else rec_limit
            pools = f.transcripts
            if old is not None and rng.random() < (0.3 if voicemail else 0.4):
                tx = None  # deleted for good
            elif rng.random() < 0.2:  # a one-off transcript made for this call, not pooled
                tx = pools.one_off(rng, kind, target.user_id, limit)
            else:
                variants = VM_VARIANTS if voicemail else REC_VARIANTS
                tx = pools.get(kind, target.user_id, limit, int(rng.random() * variants))
            self.update_call(target.id, **{f"{kind}_transcript": tx})
            return target.id
        else:
            self.update_call(rec.id)
        return rec.id


__all__ = ["RETENTION_US", "UNSET", "BadRequest", "SandboxStore"]
