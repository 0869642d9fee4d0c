"""The sandbox's calls, indexed for the list endpoint: a list sorted by (date_created, id), so a
`date_created` window is two bisects, and a dict by id."""

from __future__ import annotations

import bisect

from close_calls_pipeline.sandbox.records import CallRecord


def in_bounds(v: int, b: dict) -> bool:
    return not (
        ("gt" in b and v <= b["gt"])
        or ("gte" in b and v < b["gte"])
        or ("lt" in b and v >= b["lt"])
        or ("lte" in b and v > b["lte"])
    )


def _match(r: CallRecord, aa, lead_ids, user_ids, contact_ids) -> bool:
    if aa and (r.aa is None or not in_bounds(r.aa, aa)):
        return False
    return not (
        (lead_ids is not None and r.lead_id not in lead_ids)
        or (user_ids is not None and r.user_id not in user_ids)
        or (contact_ids is not None and r.contact_id not in contact_ids)
    )


class CallIndex:
    """Calls sorted by (date_created, id), and by id. Not locked: the store holds the lock."""

    def __init__(self):
        self.recs: list[CallRecord] = []
        self.dcs: list[int] = []
        self.by_id: dict[str, CallRecord] = {}
        self._filter_cache: dict = {}

    def load(self, recs: list[CallRecord]) -> None:
        recs.sort(key=lambda r: (r.dc, r.id))
        self.recs = recs
        self.dcs = [r.dc for r in recs]
        self.by_id = {r.id: r for r in recs}

    def __len__(self) -> int:
        return len(self.recs)

    def insert(self, rec: CallRecord) -> None:
        lo = bisect.bisect_left(self.dcs, rec.dc)
        hi = bisect.bisect_right(self.dcs, rec.dc, lo)
        pos = lo
        while pos < hi and self.recs[pos].id < rec.id:
            pos += 1
        self.dcs.insert(pos, rec.dc)
        self.recs.insert(pos, rec)
        self.by_id[rec.id] = rec

    def remove(self, rec: CallRecord) -> None:
        lo = bisect.bisect_left(self.dcs, rec.dc)
        hi = bisect.bisect_right(self.dcs, rec.dc, lo)
        for pos in range(lo, hi):
            if self.recs[pos] is rec:
                del self.dcs[pos]
                del self.recs[pos]
                break
        self.by_id.pop(rec.id, None)

    def position(self, rec: CallRecord) -> int:
        pos = bisect.bisect_left(self.dcs, rec.dc)
        while self.recs[pos] is not rec:
            pos += 1
        return pos

    def window(self, gt=None, gte=None, lt=None, lte=None) -> tuple[int, int]:
        """Positions [lo, hi) of the sorted list inside the date_created bounds (us)."""
        dcs = self.dcs
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

    def query(
        self,
        version: int,
        *,
        dc: dict | None = None,
        aa: dict | None = None,
        ids: list[str] | None = None,
        lead_ids: set | None = None,
        user_ids: set | None = None,
        contact_ids: set | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> tuple[list[CallRecord], bool]:
        """One page of calls, newest date_created first (ties: id descending). `version`
        identifies the store's state (filtered listings are cached per version)."""
        lo, hi = self.window(**(dc or {}))
        filtered = bool(
            aa or lead_ids is not None or user_ids is not None or contact_ids is not None
        )
        if ids is None and not filtered:
            start = hi - 1 - skip
            stop = max(lo - 1, start - limit)
            recs = self.recs
            page = [recs[i] for i in range(start, stop, -1)]
            return page, stop > lo - 1
        if ids is not None:
            cands = []
            seen = set()
            for cid in ids:
                r = self.by_id.get(cid)
                if r is not None and cid not in seen:
                    seen.add(cid)
                    cands.append(r)
            if dc:
                cands = [r for r in cands if in_bounds(r.dc, dc)]
            cands.sort(key=lambda r: (r.dc, r.id), reverse=True)
            matches = [r for r in cands if _match(r, aa, lead_ids, user_ids, contact_ids)]
        else:
            key = (
                lo,
                hi,
                tuple(sorted((aa or {}).items())),
                tuple(sorted(lead_ids)) if lead_ids is not None else None,
                tuple(sorted(user_ids)) if user_ids is not None else None,
                tuple(sorted(contact_ids)) if contact_ids is not None else None,
                version,
                len(self.recs),
            )
            matches = self._filter_cache.get(key)
            if matches is None:
                recs = self.recs
                matches = [
                    recs[i]
                    for i in range(hi - 1, lo - 1, -1)
                    if _match(recs[i], aa, lead_ids, user_ids, contact_ids)
                ]
                if len(self._filter_cache) > 16:
                    self._filter_cache.clear()
                self._filter_cache[key] = matches
        return matches[skip : skip + limit], len(matches) > skip + limit
