"""Reading a page whose JSON does not decode: split it record by record instead of failing it.

A page (`{"data": [...], "has_more": ...}` or the Event Log's `cursor_next`) can be well formed
around one bad record: bytes that are not UTF-8, a lone surrogate escape (`"\\ud800"`, valid JSON
grammar but no Unicode character), or a record cut in the middle. Retrying does not help (the
server sends the same bytes again), and failing the page would stop the sync for good. So the
records are delimited by brackets and strings alone (bytes, without decoding them), a record that
cannot be delimited is skipped up to the next record that parses, and each record is then decoded
on its own by the caller. Only a body that is not a JSON object at all (a proxy's HTML page) or
whose end is missing (a truncated body) is not a page: that is a transport fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

_STRUCTURE = re.compile(rb'["{}\[\]]')
_STRING_END = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"
_DATA_START = re.compile(rb'"data"\s*:\s*\[')
_SCALAR = rb'(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|"(?:[^"\\]|\\.)*")'
_MEMBER = re.compile(rb'\s*"([^"\\]*)"\s*:\s*(' + _SCALAR + rb")\s*")
_TAIL = re.compile(rb"\]\s*((?:,\s*\"[^\"\\]*\"\s*:\s*" + _SCALAR + rb"\s*)*)\}\s*$")
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_REPLACEMENT = rb"\ufffd"


@dataclass
class SplitPage:
    """A page taken apart leniently: each record's bytes as received (a record that could not be
    delimited is one slice, up to the next record that parses), and the page's scalar members
    (`has_more`, `cursor_next`, ...)."""

    records: list[bytes]
    members: dict = field(default_factory=dict)
    broken: int = 0  # slices that are not a well-delimited record


def _skip_whitespace(body: bytes, pos: int, end: int) -> int:
    while pos < end and body[pos] in _WHITESPACE:
        pos += 1
    return pos


def value_end(body: bytes, pos: int, end: int) -> int | None:
    """End (exclusive) of the object or array starting at `body[pos]`, found by brackets and
    strings only (any byte may sit inside a string); None if it is unbalanced before `end`."""
    stack: list[int] = []
    i = pos
    while i < end:
        m = _STRUCTURE.search(body, i, end)
        if m is None:
            return None
        c = body[m.start()]
        i = m.end()
        if c == 0x22:  # a string: skip to its closing quote
            while True:
                s = _STRING_END.search(body, i, end)
                if s is None:
                    return None
                if body[s.start()] == 0x5C:  # backslash: skip the escaped byte
                    i = s.start() + 2
                    continue
                i = s.end()
                break
        elif c in b"{[":
            stack.append(c)
        else:
            if not stack or stack.pop() != (0x7B if c == 0x7D else 0x5B):
                return None
            if not stack:
                return i
    return None


def _followed_by_separator(body: bytes, e: int, end: int) -> int | None:
    """Position after the `,` following a record ending at `e`, `end` if the array ends there,
    else None."""
    j = _skip_whitespace(body, e, end)
    if j >= end:
        return end
    return j + 1 if body[j] == 0x2C else None


def _record_shape(record: bytes) -> frozenset | None:
    """The top-level keys of a well-formed record, to recognise its neighbours by."""
    parsed = decode_record(record)
    return frozenset(parsed) if isinstance(parsed, dict) and "id" in parsed else None


def _starts_record(body: bytes, q: int, end: int, shape: frozenset | None) -> bool:
    """Does a record start at `q`: an object with a string `id`, followed by `,` or the end of
    the array, with at least half the keys of the page's well-formed records (so an object
    nested in a broken record is not taken for one)?"""
    e = value_end(body, q, end)
    if e is None or _followed_by_separator(body, e, end) is None:
        return False
    record = decode_record(body[q:e])
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        return False
    return shape is None or 2 * len(shape & record.keys()) >= len(shape)


def _resync(body: bytes, start: int, end: int, shape: frozenset | None) -> int:
    """The next position after `start` where a record starts (a `{` after a `,`), else `end`."""
    q = start
    while True:
        q = body.find(b"{", q, end)
        if q < 0:
            return end
        before = q - 1
        while before > start and body[before] in _WHITESPACE:
            before -= 1
        if body[before] == 0x2C and _starts_record(body, q, end, shape):
            return q
        q += 1


def split_page(body: bytes) -> SplitPage | None:
    """Records and scalar members of a page that did not decode; None when the body is not a
    page at all (not a JSON object with a `data` array, or its end is missing)."""
    first = _skip_whitespace(body, 0, len(body))
    if not body.startswith(b"{", first):
        return None
    head = _DATA_START.search(body, first)
    array_close = body.rfind(b"]")
    tail = _TAIL.match(body, array_close) if array_close >= 0 else None
    if head is None or tail is None or array_close < head.end():
        return None
    members = {**_members(body[first + 1 : head.start()]), **_members(tail.group(1))}
    records: list[bytes] = []
    broken = 0
    shape: frozenset | None = None
    end = array_close
    p = _skip_whitespace(body, head.end(), end)
    while p < end:
        e = value_end(body, p, end) if body[p] == 0x7B else None
        after = None if e is None else _followed_by_separator(body, e, end)
        # A record cut inside a string turns strings inside out for the scan, which can then
        # close an "object" further on by chance: a delimited record must also parse.
        if after is not None and _decode_replacing(body[p:e]) is None:
            after = None
        if after is not None:
            records.append(body[p:e])
            shape = shape or _record_shape(body[p:e])
        else:  # cannot be delimited: everything up to the next record that parses is one slice
            q = _resync(body, p + 1, end, shape)
            cut = q
            if q < end:  # drop the `,` before the next record
                cut = body.rfind(b",", p, q)
            records.append(body[p:cut].rstrip(_WHITESPACE))
            broken += 1
            after = q
        p = _skip_whitespace(body, after, end)
    return SplitPage(records, members, broken)


def _members(chunk: bytes) -> dict:
    return {m.group(1).decode(): orjson.loads(m.group(2)) for m in _MEMBER.finditer(chunk)}


def repair_lone_surrogates(text: bytes) -> bytes | None:
    """The JSON text with each lone UTF-16 surrogate escape (`\\ud800` without its pair, which no
    UTF-8 text can hold) replaced by `\\ufffd`; None when there is none. Nothing else changes."""
    spans: list[tuple[int, int]] = []
    pending_high: tuple[int, int] | None = None
    for m in _ESCAPE.finditer(text):
        code = m.group(1)
        value = int(code[1:], 16) if len(code) == 5 and code[:1] == b"u" else None
        is_high = value is not None and 0xD800 <= value <= 0xDBFF
        is_low = value is not None and 0xDC00 <= value <= 0xDFFF
        if pending_high is not None:
            if is_low and m.start() == pending_high[1]:
                pending_high = None
                continue
            spans.append(pending_high)
            pending_high = None
        if is_high:
            pending_high = (m.start(), m.end())
        elif is_low:
            spans.append((m.start(), m.end()))
    if pending_high is not None:
        spans.append(pending_high)
    if not spans:
        return None
    parts, last = [], 0
    for start, stop in spans:
        parts += [text[last:start], _REPLACEMENT]
        last = stop
    parts.append(text[last:])
    return b"".join(parts)


def decode_record(raw: bytes) -> object | None:
    """One record's JSON, or None if it does not parse even with lone surrogates replaced."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    repaired = repair_lone_surrogates(raw)
    if repaired is not None:
        try:
            return orjson.loads(repaired)
        except orjson.JSONDecodeError:
            pass
    return None


def recover_id(raw: bytes, prefix: str) -> str | None:
    """The id of a record that does not parse, read from its text where it can be: the first
    `"id": "<prefix>..."`, if it holds nothing but printable ASCII."""
    m = re.search(rb'"id"\s*:\s*"(' + re.escape(prefix.encode()) + rb'[A-Za-z0-9_\-]+)"', raw)
    return m.group(1).decode("ascii") if m else None


def recover_string(raw: bytes, key: str) -> str | None:
    """A top-level-looking string member (`"key": "value"`, ASCII) of a record that does not
    parse: the first occurrence."""
    m = re.search(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*"([ -!#-\[\]-~]*)"', raw)
    return m.group(1).decode("ascii") if m else None


@dataclass(frozen=True)
class Unreadable:
    """A record of a page that does not parse even leniently (cut in the middle): its bytes as
    received. `get` reads a string member from its text where it can, like a dict would."""

    raw: bytes

    def get(self, key: str, default: str | None = None) -> str | None:
        value = recover_string(self.raw, key)
        return default if value is None else value

    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def _decode_replacing(raw: bytes) -> object | None:
    """`decode_record`, and failing that the same with bytes that are not UTF-8 replaced."""
    parsed = decode_record(raw)
    if parsed is None:
        parsed = decode_record(raw.decode("utf-8", errors="replace").encode())
    return parsed


def loads_lenient(body: bytes) -> dict | None:
    """A JSON object body that does not decode, read as far as it can be: lone surrogates and
    bytes that are not UTF-8 replaced by U+FFFD, and in a page each record on its own (one that
    still does not parse is an `Unreadable`). None when it is not a JSON object or its end is
    missing (a truncated body: a transport fault)."""
    if not body[_skip_whitespace(body, 0, len(body)) :].startswith(b"{"):
        return None
    parsed = _decode_replacing(body)
    if isinstance(parsed, dict):
        return parsed
    split = split_page(body)
    if split is None:
        return None
    records = [_decode_replacing(raw) for raw in split.records]
    return {
        **split.members,
        "data": [
            Unreadable(raw) if record is None else record
            for raw, record in zip(split.records, records)
        ],
    }
