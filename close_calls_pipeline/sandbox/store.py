"""The sandbox's state: its calls, reference data, Event Log and virtual clock, and the
mutations tests and the live clock make. Queries are in `queries`, the Event Log in `events`,
what the live clock plays each hour in `live`, the time constants in `clock`.
"""

from __future__ import annotations

import bisect
import gc
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import orjson

from close_calls_pipeline.core import config
from close_calls_pipeline.sandbox.clock import (
    HISTORY_DAYS,
    HOUR_US,
    RETENTION_US,
    US_PER_DAY,
    US_PER_S,
    dt_to_us,
    iso,
    parse_ts,
    us_to_dt,
)
from close_calls_pipeline.sandbox.data import CallFactory, make_note
from close_calls_pipeline.sandbox.events import EventLog
from close_calls_pipeline.sandbox.live import calls_of_hour, hours_to_replay
from close_calls_pipeline.sandbox.people import make_id
from close_calls_pipeline.sandbox.queries import CallIndex
from close_calls_pipeline.sandbox.records import (
    CallRecord,
    RawCallRecord,
    dumps,
    intern_keys,
    str_or_none,
    tx_bytes,
)
from close_calls_pipeline.sandbox.transcripts import (
    REC_VARIANTS,
    VM_VARIANTS,
    transcript_fits,
    transcript_limits,
)

# fields that decide whether a call may carry a transcript, and how long it may be
TRANSCRIPT_RULE_FIELDS = frozenset(
    {"disposition", "duration", "recording_url", "voicemail_url", "voicemail_duration"}
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class SandboxStore:
    """Deterministic Close data with a virtual clock. Thread-safe (one re-entrant lock).

    Frozen (the default): `calls` calls spread over the `history_days` before `start`, and a
    clock that moves only when `advance` is called. Live: the calls created in the last
    `history_days` (a window sliding with the clock, `calls` of them at any time, see `live`),
    their edits and deletes, and a clock that follows wall time from `start`.
    """

    def __init__(
        self,
        calls: int = config.SANDBOX_CALLS,
        seed: int = 1,
        start: datetime | None = None,
        history_days: int = HISTORY_DAYS,
        live: bool = False,
        organization_id: str | None = None,
        organization_name: str | None = None,
    ):
        """`organization_id` / `organization_name`: the organization `/me/` answers for and every
        record carries (default: derived from the seed), so that tests can serve two."""
        self.seed = seed
        self.calls = calls
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
        self._calls = CallIndex()
        self.deleted_ids: set[str] = set()
        self._events = EventLog(self.organization_id)
        self._record_events = True
        # Events written (or consolidated) while this is set become visible to /event/ only this
        # many seconds after their date_updated (0: at once). Close writes some entries late;
        # this is how a test makes some of them late while others are on time.
        self.event_delay_s = 0.0
        self._raw_counter = 0
        self.version = 0  # bumped on every mutation (cache key for filtered listings)
        self.hours_played = 0  # live mode: hours of calls and changes played so far
        if not live:
            self._build_history(calls, start_us, history_days)
            return
        self._window_hours = history_days * 24
        # hour -> (action, call id, edit number) due then, in the order they were planned
        self._due: defaultdict[int, list[tuple[str, str, int]]] = defaultdict(list)
        self._next_hour = start_us // HOUR_US - hours_to_replay(self._window_hours)
        self._wall0 = time.monotonic()
        self._start_us = start_us
        self._offset_us = 0
        self._now_us = self._next_hour * HOUR_US
        self._catch_up(start_us)

    # ------------------------------------------------------------------ clock

    @property
    def now(self) -> datetime:
        return us_to_dt(self._now_us)

    @property
    def now_us(self) -> int:
        return self._now_us

    def advance(self, seconds: float) -> None:
        """Move the clock forward (in live mode: shift it ahead of wall time, playing hours)."""
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
        """Live mode: catch the clock (and the hours it plays) up to wall time."""
        if not self.live:
            return
        target = self._start_us + self._offset_us + int((time.monotonic() - self._wall0) * US_PER_S)
        with self.lock:
            if target > self._now_us:
                self._catch_up(target)

    def _catch_up(self, target_us: int) -> None:
        last_hour = target_us // HOUR_US
        first_recorded = target_us - RETENTION_US
        while self._next_hour <= last_hour:
            hour = self._next_hour
            hour_us = hour * HOUR_US
            self._now_us = max(hour_us, self._now_us)
            self._record_events = hour_us >= first_recorded
            self._play_hour(hour)
            self._next_hour = hour + 1
            self.hours_played += 1
        self._record_events = True
        self._now_us = max(self._now_us, target_us)
        self._events.prune(self._now_us)
        self.version += 1

    def _play_hour(self, hour: int) -> None:
        """The edits and deletes due this hour, then the calls it brings (see `live`). Event ids
        are drawn from an rng of the hour, so they do not depend on when the store started."""
        saved_rng = self._rng
        self._rng = random.Random(f"events:{self.seed}:{hour}")
        try:
            for action, call_id, edit in self._due.pop(hour, ()):
                rec = self._calls.by_id.get(call_id)
                if rec is None or isinstance(rec, RawCallRecord):
                    continue  # deleted, or replaced, by a test
                if action == "delete":
                    self.delete_call(call_id)
                else:
                    edit_rng = random.Random(f"edit:{self.seed}:{call_id}:{edit}")
                    self._random_update(edit_rng, rec, search_nearby=False)
            for planned in calls_of_hour(
                self._factory, self.seed, hour, self.calls, self._window_hours
            ):
                call_id = planned.call["id"]
                self._create(planned.call, planned.rtx, planned.vtx)
                self._due[hour + planned.delete_after_hours].append(("delete", call_id, 0))
                for edit, age in enumerate(planned.edit_after_hours):
                    self._due[hour + age].append(("edit", call_id, edit))
        finally:
            self._rng = saved_rng

    # ------------------------------------------------------------------ building

    def _build_history(self, n: int, end_us: int, days: int) -> None:
        rng = random.Random(f"history:{self.seed}")
        span = max(1, days * US_PER_DAY)
        rnd = rng.random
        dcs = sorted(end_us - 1 - int(rnd() * span) for _ in range(n))
        make = self._factory.make_call
        recs = []
        gc_was_enabled = gc.isenabled()
        gc.disable()  # hundreds of thousands of acyclic objects: the cyclic GC only costs time
        try:
            for dc in dcs:
                cid = make_id(rng, "acti_")
                call, rtx, vtx = make(rng, cid, dc, end_us)
                recs.append(CallRecord.from_call(call, rtx, vtx, dumps(call)))
        finally:
            if gc_was_enabled:
                gc.enable()
        self._calls.load(recs)
        self.version += 1

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
        # recorded (live mode skips recording for hours outside the retention window)
        event_id = make_id(self._rng, "ev_", 22)
        if not self._record_events:
            return
        now = self._now_us
        visible = now + round(self.event_delay_s * US_PER_S)
        self._events.add(
            event_id, now, visible, action, rec_id, lead_id, user_id, changed, data, previous
        )

    def events(self, **filters) -> tuple[list[bytes], tuple[int, str] | None]:
        """Events newest first (retention applied); see `EventLog.query` for the filters."""
        with self.lock:
            return self._events.query(self._now_us, **filters)

    def all_events(self) -> list[dict]:
        """Every retained event, newest first, decoded (for tests)."""
        with self.lock:
            return self._events.all(self._now_us)

    # ------------------------------------------------------------------ reads

    def get(self, call_id: str) -> CallRecord | None:
        return self._calls.by_id.get(call_id)

    def query_calls(self, **query) -> tuple[list[CallRecord], bool]:
        """One page of calls, newest date_created first; see `CallIndex.query`."""
        with self.lock:
            return self._calls.query(self.version, **query)

    def __len__(self) -> int:
        return len(self._calls)

    def truth(self) -> dict[str, dict]:
        """Every live call id → the full API object, transcripts included when present (calls
        served as raw bytes, see `put_raw_call_bytes`, are left out: they have no object)."""
        with self.lock:
            return {r.id: r.full() for r in self._calls.recs if not isinstance(r, RawCallRecord)}

    def call_ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self._calls.recs]

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
                self._create(call, rtx, vtx, sort_us=at_us)
                ids.append(cid)
            return ids

    def _create(self, call: dict, rtx, vtx, sort_us: int | None = None) -> None:
        """Store a new call and write its `created` event."""
        body = dumps(call)
        rec = CallRecord.from_call(call, rtx, vtx, body, sort_us=sort_us)
        self._calls.insert(rec)
        self._add_event("created", rec.id, rec.lead_id, rec.user_id, [], body, {})
        self.version += 1

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
            rec = self._calls.by_id.get(call_id)
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
                rtx = tx_bytes(recording_transcript)
                changed.append("recording_transcript")
            if voicemail_transcript is not UNSET:
                vtx = tx_bytes(voicemail_transcript)
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
            body = dumps(call)
            new = CallRecord.from_call(call, rtx, vtx, body, sort_us=rec.dc)
            if "date_created" in changes:
                try:
                    new.dc = parse_ts(call["date_created"])
                except (TypeError, ValueError):
                    pass
            self._calls.remove(rec)
            self._calls.insert(new)
            self._add_event("updated", call_id, new.lead_id, new.user_id, changed, body, previous)
            self.version += 1

    def _refit(self, kind: str, call: dict, limit: float | None) -> bytes | None:
        if limit is None:
            return None
        return self._factory.transcripts.get(kind, call.get("user_id"), limit, 0)

    def delete_call(self, call_id: str) -> None:
        with self.lock:
            rec = self._calls.by_id.get(call_id)
            if rec is None:
                raise KeyError(call_id)
            self._calls.remove(rec)
            self.deleted_ids.add(call_id)
            previous = {"id": call_id} if isinstance(rec, RawCallRecord) else orjson.loads(rec.body)
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
                rtx = None if v is None else dumps(v)
            if "voicemail_transcript" in record:
                v = record.pop("voicemail_transcript")
                vtx = None if v is None else dumps(v)
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
            body = dumps(record, orjson.OPT_NON_STR_KEYS)
            aa = None
            try:
                aa = parse_ts(record.get("activity_at"))
            except (TypeError, ValueError, AttributeError):
                pass
            rec = CallRecord(
                cid,
                sort_us,
                aa,
                str_or_none(record.get("lead_id")),
                str_or_none(record.get("user_id")),
                str_or_none(record.get("contact_id")),
                intern_keys(str(k) for k in record),
                body,
                rtx,
                vtx,
            )
            old = self._calls.by_id.get(cid)
            if old is not None:
                self._calls.remove(old)
            self._calls.insert(rec)
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
            old = self._calls.by_id.get(call_id)
            sort_us = old.dc if old is not None else (self._now_us if at is None else dt_to_us(at))
            rec = RawCallRecord(
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
            rec.shadowed = old.shadowed if isinstance(old, RawCallRecord) else old
            if old is not None:
                self._calls.remove(old)
            self._calls.insert(rec)
            if event:
                self._add_event("updated", call_id, rec.lead_id, rec.user_id, ["note"], body, {})
            self.version += 1

    def fix_raw_call(self, call_id: str) -> None:
        """Serve again the call that `put_raw_call_bytes` replaced, as edited now (an event)."""
        with self.lock:
            rec = self._calls.by_id[call_id]
            if not isinstance(rec, RawCallRecord) or rec.shadowed is None:
                raise KeyError(f"{call_id} is not a raw call that replaced one")
            self._calls.remove(rec)
            self._calls.insert(rec.shadowed)
            self.update_call(call_id)

    def _pick(self, rng: random.Random, old: bool) -> CallRecord | None:
        n = len(self._calls.recs)
        if n == 0:
            return None
        split = bisect.bisect_left(self._calls.dcs, self._now_us - 60 * US_PER_DAY)
        if old and split > 0:
            return self._calls.recs[rng.randrange(split)]
        recent = bisect.bisect_left(self._calls.dcs, self._now_us - 14 * US_PER_DAY)
        if recent < n and not old:
            return self._calls.recs[rng.randrange(recent, n)]
        return self._calls.recs[rng.randrange(n)]

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

    def _transcript_target(
        self, rec: CallRecord, search_nearby: bool
    ) -> tuple[CallRecord | None, tuple]:
        """`rec` if it may carry a transcript, else (with `search_nearby`) the nearest call after
        it that may (within 64 positions), with its transcript limits."""
        pos, n = self._calls.position(rec), len(self._calls.recs)
        for i in range(min(64 if search_nearby else 1, n)):
            cand = self._calls.recs[(pos + i) % n]
            if b'"answered"' not in cand.body and b'"vm-left"' not in cand.body:
                continue  # cheap pre-check: neither disposition can carry a transcript
            call = orjson.loads(cand.body)
            limits = transcript_limits(call) if isinstance(call, dict) else (None, None)
            if limits != (None, None):
                return cand, limits
        return None, (None, None)

    def _random_update(
        self, rng: random.Random, rec: CallRecord, *, search_nearby: bool = True
    ) -> str:
        """One random edit of `rec` (or, for a transcript change, with `search_nearby`, of a call
        near it that may carry a transcript); returns the id of the call edited. The live clock
        edits only the call itself, so an edit does not depend on which calls sit beside it."""
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
            target, (rec_limit, vm_limit) = self._transcript_target(rec, search_nearby)
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


__all__ = ["UNSET", "SandboxStore"]
