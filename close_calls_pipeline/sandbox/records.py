"""How the sandbox keeps one call: a compact `CallRecord` with the fields its queries filter on
and the call's JSON as pre-serialized orjson bytes without transcripts; transcripts are separate
serialized blobs (most of them shared from a small pool), spliced in when a request names them
in `_fields`."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from close_calls_pipeline.sandbox.clock import parse_ts


def dumps(obj, option: int = 0) -> bytes:
    """orjson.dumps, copied to an exact-size bytes: orjson's own result keeps a ~16 KB
    buffer, which would multiply the memory of a store holding many small documents."""
    return bytes(memoryview(orjson.dumps(obj, option=option)))


_KEYSETS: dict[frozenset, frozenset] = {}


def intern_keys(keys: Iterable[str]) -> frozenset:
    fs = frozenset(keys)
    return _KEYSETS.setdefault(fs, fs)


def str_or_none(v) -> str | None:
    return v if isinstance(v, str) else None


def tx_bytes(value) -> bytes | None:
    """A transcript value for update_call: None, a JSON-able value, or pre-serialized bytes."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return dumps(value)


class CallRecord:
    """One stored call: id, date_created (`dc`) and activity_at (`aa`) as integer microseconds,
    lead/user/contact ids, the set of its keys, its body and its transcripts."""

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

    @classmethod
    def from_call(cls, call: dict, rtx, vtx, body: bytes, sort_us: int | None = None):
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
        return cls(
            call["id"],
            dc,
            aa,
            str_or_none(call.get("lead_id")),
            str_or_none(call.get("user_id")),
            str_or_none(call.get("contact_id")),
            intern_keys(call.keys()),
            body,
            rtx,
            vtx,
        )

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


class RawCallRecord(CallRecord):
    """A call served as given bytes (which need not be JSON), whatever `_fields` asks for."""

    __slots__ = ("shadowed",)

    def render(self, fields: frozenset | set | None) -> bytes:
        return self.body

    def full(self) -> dict:
        raise ValueError(f"call {self.id} is served as raw bytes")
