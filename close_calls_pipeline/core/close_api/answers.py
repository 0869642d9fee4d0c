"""What one HTTP answer of the Close API means: a decoded page, a fault worth retrying, or an error.

A 2xx body that is cut (shorter than its Content-Length) or not JSON at all (a proxy's error page)
is a fault of the transport and is retried. A body that is JSON but does not decode (bytes that
are not UTF-8, a lone surrogate escape, a record cut in the middle) is never retried, since the
server would send the same bytes again: it is split record by record (`pages`) and each record is
left to the caller to decode or quarantine. 401/403 and other 4xx fail at once; 5xx are retried.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import orjson
import requests

from . import pages
from .errors import CloseApiError, CloseAuthError, MaxSkipExceeded
from .ratelimit import parse_ratelimit
from .redaction import Redactor

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_MAX_SKIP_RE = re.compile(r"max_skip\s*=\s*(\d+)", re.IGNORECASE)
# The longest a 429 may pause an endpoint group, whatever the server asks.
MAX_RATE_LIMIT_WAIT = 600.0

AUTH_HELP = (
    "Set CLOSE_API_KEY to a valid API key (Close → Settings → Developer → API Keys; an OAuth "
    "access token is sent as a Bearer token instead) and check CLOSE_API_BASE_URL (now {base})."
)


class Retryable(Exception):
    """This attempt failed in a way worth retrying. `unreachable`: no connection could be made
    (refused, unknown host, connect timeout), which says more about the URL than the server."""

    def __init__(
        self,
        description: str,
        status: int | None = None,
        wait: float | None = None,
        *,
        unreachable: bool = False,
    ):
        super().__init__(description)
        self.description = description
        self.status = status
        self.wait = wait
        self.unreachable = unreachable


class LenientPage(NamedTuple):
    """A call page split by `pages.split_page` because it did not decode as a whole."""

    data: list[bytes]
    has_more: bool | None
    broken: int


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def read_answer(
    resp: requests.Response,
    method: str,
    path: str,
    *,
    attempts: int,
    decoder: msgspec.json.Decoder | None,
    redactor: Redactor,
    base_url: str,
) -> Any:
    """The decoded body of a 2xx answer, or a `Retryable`; raises `CloseApiError` (or a subclass)
    for an answer that no retry can mend."""
    status = resp.status_code
    if 200 <= status < 300:
        return _read_body(resp, method, path, decoder)
    if status in (401, 403):
        what = "rejected the credentials" if status == 401 else "refused access"
        raise CloseAuthError(
            f"Close API {what} (HTTP {status} on {method} {path}: "
            f"{server_message(resp, redactor)}). " + AUTH_HELP.format(base=base_url),
            endpoint=path,
            status=status,
            attempts=attempts,
        )
    if status in RETRYABLE_STATUS or (status >= 500 and status not in (501, 505)):
        return Retryable(f"HTTP {status}", status, wait=retry_after(resp))
    message = server_message(resp, redactor)
    if status == 400 and ("max_skip" in message or "maximum skip" in message):
        m = _MAX_SKIP_RE.search(message)
        raise MaxSkipExceeded(
            f"Close API {method} {path}: HTTP 400: {message}",
            max_skip=int(m.group(1)) if m else None,
            endpoint=path,
            status=status,
            attempts=attempts,
        )
    raise CloseApiError(
        f"Close API {method} {path}: HTTP {status}: {message}",
        endpoint=path,
        status=status,
        attempts=attempts,
    )


def _read_body(
    resp: requests.Response, method: str, path: str, decoder: msgspec.json.Decoder | None
) -> Any:
    status = resp.status_code
    content = resp.content
    expected = resp.headers.get("Content-Length")
    if (
        expected is not None
        and expected.isdigit()
        and not resp.headers.get("Content-Encoding")
        and int(expected) != len(content)
    ):
        return Retryable(
            f"truncated body (HTTP {status}, {len(content)} of {expected} bytes)", status
        )
    if decoder is not None:
        try:
            return decoder.decode(content)
        except msgspec.DecodeError as exc:  # a bad record, or a body of the wrong shape
            split = pages.split_page(content)
            if split is None:
                return Retryable(f"body is not a valid page (HTTP {status}: {exc})", status)
            log.warning(
                "Close API %s %s: page does not decode (%s); split it into %d records "
                "(%d not well formed)",
                method,
                path,
                exc,
                len(split.records),
                split.broken,
            )
            return LenientPage(split.records, split.members.get("has_more"), split.broken)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        data = pages.loads_lenient(content)
        if data is None:
            return Retryable(f"body is not valid JSON (HTTP {status}: {exc})", status)
        log.warning(
            "Close API %s %s: body does not decode (%s); read it record by record",
            method,
            path,
            exc,
        )
    if not isinstance(data, dict):
        return Retryable(f"body is not a JSON object (HTTP {status})", status)
    return data


def server_message(resp: requests.Response, redactor: Redactor) -> str:
    """What the server says went wrong (its `error` or `field-errors`, else the start of the
    body), redacted."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        body = None
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err
        elif err:
            msg = err
        elif body.get("errors") or body.get("field-errors"):
            msg = {k: body[k] for k in ("errors", "field-errors") if body.get(k)}
    if msg is None:
        msg = resp.text[:300].strip() or resp.reason or "no message"
    return redactor.redact(str(msg)[:1000])


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after(resp: requests.Response) -> float | None:
    """Seconds the Retry-After header asks for (a number or an HTTP date), or None."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = max(0.0, (utc(when) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None
    return seconds


def rate_limit_wait(resp: requests.Response) -> float:
    """Wait after a 429: body error.rate_reset, body rate_reset, Retry-After, RateLimit reset."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        body = None
    candidates: list[Any] = []
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            candidates.append(err.get("rate_reset"))
        candidates.append(body.get("rate_reset"))
    candidates.append(retry_after(resp))
    info = parse_ratelimit(resp.headers.get("RateLimit"))
    candidates.append(info.reset if info else None)
    for value in candidates:
        seconds = _seconds(value)
        if seconds is not None:
            return min(seconds, MAX_RATE_LIMIT_WAIT)
    return 1.0
