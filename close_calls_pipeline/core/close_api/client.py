"""A careful client for the parts of the Close REST API that a call connector needs.

See ``/work/shared/close-api.md`` (the contract) for the facts this is built on. In short:

* one ``requests.Session`` (keep-alive, a connection pool sized for the worker threads, no urllib3
  retries, connect/read timeouts on every request), safe to share between threads;
* HTTP Basic (API key) or Bearer (OAuth) auth; the secret never appears in messages, logs or reprs;
* per endpoint-group rate-limit pacing shared by all threads (:mod:`.ratelimit`), 429 pauses;
* bounded retries with full-jitter exponential backoff on 5xx, network faults, cut bodies and
  bodies that are not JSON at all (a proxy's error page), within a per-request deadline, so a
  server that accepts connections and never answers fails a request in ``request_deadline``
  seconds; 401/403 fail at once with a message that says how to fix it;
* a page that is JSON but does not decode (bytes that are not UTF-8, a lone surrogate escape, a
  record cut in the middle) is never retried: the server would send the same bytes again. It is
  split record by record (:mod:`.pages`) and each record is left to the caller to decode or
  quarantine;
* iterators for calls in a ``date_created`` window (splitting the window before the ``_skip``
  cap), Event Log events, calls by id (``_params`` body form), outcomes and users.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import logging
import math
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookiejar import DefaultCookiePolicy
from typing import Any, NamedTuple, Self
from urllib.parse import quote, urlsplit

import msgspec
import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from close_calls_pipeline.core import config
from close_calls_pipeline.core.call_fields import (
    DOCUMENTED_CALL_FIELDS,
    TRANSCRIPT_FIELDS,
    UNDOCUMENTED_CALL_FIELDS,
)

from . import pages
from .errors import CloseApiError, CloseAuthError, MaxSkipExceeded
from .pages import Unreadable
from .ratelimit import RateLimiter, endpoint_group, parse_ratelimit

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = config.DEFAULT_BASE_URL

# Every documented Call field (close-api.md), both transcripts (returned only when named), and the
# undocumented fields seen in the wild. Asking for a field the server does not have is harmless.
CALL_FIELDS: tuple[str, ...] = (
    *DOCUMENTED_CALL_FIELDS,
    *TRANSCRIPT_FIELDS,
    *UNDOCUMENTED_CALL_FIELDS,
)

EVENT_PAGE_LIMIT = 50  # the Event Log's maximum _limit
IDS_PER_REQUEST = 100  # id__in batch size (the call list's maximum _limit)
MIN_WINDOW = timedelta(milliseconds=1)

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_RETRYABLE_EXC = (
    requests.exceptions.ConnectionError,  # refused, reset, RemoteDisconnected, ConnectTimeout, ...
    requests.exceptions.Timeout,  # ReadTimeout
    requests.exceptions.ChunkedEncodingError,  # body cut (urllib3 enforces Content-Length)
    requests.exceptions.ContentDecodingError,
)
_MAX_SKIP_RE = re.compile(r"max_skip\s*=\s*(\d+)", re.IGNORECASE)
_URL_RE = re.compile(r"(?:https?://|url: )\S+")


class _CallPage(msgspec.Struct):
    """A page of the call list, decoded only as far as paging needs: each call stays the raw
    JSON text Close sent, so it is parsed once, in bulk, by the landing (see `records`)."""

    data: list[msgspec.Raw] | None = None
    has_more: bool | None = None


_CALL_PAGE = msgspec.json.Decoder(_CallPage)


class _LenientPage(NamedTuple):
    """A call page split by `pages.split_page` because it did not decode as a whole."""

    data: list[bytes]
    has_more: bool | None
    broken: int


class WindowPage(NamedTuple):
    """A page of `iter_call_window_pages`: the calls, and where they were read. Offset paging
    within one (sub)window returns calls newest `date_created` first; `skip == 0` starts a new
    sequence (a window, or a half of a split one)."""

    calls: list[bytes]
    start: datetime
    end: datetime
    skip: int


_AUTH_HELP = (
    "Set CLOSE_API_KEY to a valid API key (Close → Settings → Developer → API Keys; an OAuth "
    "access token is sent as a Bearer token instead) and check CLOSE_API_BASE_URL (now {base})."
)


def _utc(dt: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_ts(dt: datetime) -> str:
    """ISO 8601 with microseconds and an explicit ``+00:00`` offset."""
    return _utc(dt).isoformat(timespec="microseconds")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "Close API base URL must look like https://api.close.com/api/v1 "
            f"(got scheme {parts.scheme!r}); check CLOSE_API_BASE_URL."
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "Close API base URL must not embed credentials; pass the API key separately "
            "(CLOSE_API_KEY) and check CLOSE_API_BASE_URL."
        )
    if parts.query or parts.fragment:
        raise ValueError("Close API base URL must not have a query string or fragment.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"Refusing plain http:// to non-loopback host {parts.hostname!r}: the API key would "
            "travel unencrypted. Use https:// (CLOSE_API_BASE_URL); http:// is only allowed for "
            "127.0.0.0/8, ::1 and localhost (the sandbox)."
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class _HeaderAuth(requests.auth.AuthBase):
    """Sets a fixed Authorization header. Explicit auth also stops requests reading ~/.netrc."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<Authorization redacted>"


class Counters:
    """Thread-safe request counters of one client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0
        self._rate_limited = 0
        self._seconds_waited = 0.0
        self._seconds_paced = 0.0

    def add(
        self,
        *,
        requests: int = 0,
        retries: int = 0,
        rate_limited: int = 0,
        seconds_waited: float = 0.0,
        seconds_paced: float = 0.0,
    ) -> None:
        with self._lock:
            self._requests += requests
            self._retries += retries
            self._rate_limited += rate_limited
            self._seconds_waited += seconds_waited
            self._seconds_paced += seconds_paced

    def snapshot(self) -> dict[str, Any]:
        """``requests`` (HTTP attempts), ``retries`` (after 5xx/network/bad body),
        ``rate_limited`` (429 answers), ``seconds_waited`` (backoff sleeps + 429 waits), and
        ``seconds_paced`` (time threads were held by the rate-limit pacer, summed over threads)."""
        with self._lock:
            return {
                "requests": self._requests,
                "retries": self._retries,
                "rate_limited": self._rate_limited,
                "seconds_waited": self._seconds_waited,
                "seconds_paced": self._seconds_paced,
            }

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()})"


class _Retryable(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, description: str, status: int | None = None, wait: float | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.wait = wait


class CloseClient:
    """Thread-safe Close API client. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        access_token: str | None = None,
        pool_size: int = config.DEFAULT_WORKERS,
        connect_timeout: float = config.DEFAULT_CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = config.DEFAULT_READ_TIMEOUT_SECONDS,
        request_deadline: float = config.DEFAULT_REQUEST_DEADLINE_SECONDS,
        max_attempts: int = 6,
        max_skip: int = config.CLOSE_MAX_SKIP,
        page_size: int = 100,
        extra_call_fields: tuple[str, ...] = (),
        max_rate_limit_retries: int = 20,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
    ) -> None:
        api_key = (api_key or "").strip() or None
        access_token = (access_token or "").strip() or None
        for secret in (api_key, access_token):
            if secret is not None and not secret.isprintable():
                raise ValueError(
                    "The Close API key / access token contains control characters; set "
                    "CLOSE_API_KEY to the key exactly as Close shows it (Settings → Developer → "
                    "API Keys)."
                )
        if bool(api_key) == bool(access_token):
            raise ValueError(
                "CloseClient needs exactly one credential: an API key (CLOSE_API_KEY, sent as "
                "HTTP Basic) or an OAuth access_token (sent as Bearer)."
            )
        if max_attempts < 1 or pool_size < 1 or page_size < 1 or max_skip < 0:
            raise ValueError("max_attempts, pool_size and page_size must be >= 1, max_skip >= 0")
        if min(connect_timeout, read_timeout, request_deadline) <= 0:
            raise ValueError("connect_timeout, read_timeout and request_deadline must be > 0")
        self._base_url = _check_base_url(base_url or DEFAULT_BASE_URL)
        if api_key:
            token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
            header = f"Basic {token}"
            self._auth_kind = "basic"
            secrets = (api_key, token, header)
        else:
            header = f"Bearer {access_token}"
            self._auth_kind = "bearer"
            secrets = (access_token, header)
        self._secrets = tuple(s for s in secrets if s)

        self._pool_size = pool_size
        self._timeout = (connect_timeout, read_timeout)
        # A request's attempts that fail (no answer, 5xx, cut body) and the backoff between them
        # fit in this many seconds; waits the rate limit imposes (429, pacing) are not counted.
        self._request_deadline = request_deadline
        self._max_attempts = max_attempts
        self._max_rate_limit_retries = max_rate_limit_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._page_size = min(page_size, 100)
        self._max_skip = max_skip
        self._max_skip_lock = threading.Lock()
        if isinstance(extra_call_fields, str):
            extra_call_fields = tuple(f for f in extra_call_fields.split(",") if f)
        self._fields = ",".join(dict.fromkeys(CALL_FIELDS + tuple(extra_call_fields)))

        session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=2,
            pool_maxsize=pool_size,
            max_retries=Retry(total=0, connect=0, read=False, redirect=0, status=0),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.auth = _HeaderAuth(header)
        session.headers.update(
            {"Accept": "application/json", "User-Agent": "close-calls-pipeline/0.1 (requests)"}
        )
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless
        if _is_loopback(urlsplit(self._base_url).hostname or ""):
            session.trust_env = False  # never send the sandbox through an environment proxy
        self._session = session

        self._limiter = RateLimiter()
        self.counters = Counters()
        self._last_date: str | None = None

    # ------------------------------------------------------------------ housekeeping
    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def max_skip(self) -> int:
        return self._max_skip

    def __repr__(self) -> str:
        return (
            f"CloseClient(base_url={self._base_url!r}, auth={self._auth_kind!r}, "
            f"pool_size={self._pool_size})"
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> None:
        raise TypeError("CloseClient holds a credential and a connection pool; do not pickle it")

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def server_now(self) -> datetime | None:
        """The server's clock (aware UTC, 1 s resolution) from the latest response's Date header."""
        raw = self._last_date
        if not raw:
            return None
        try:
            return _utc(email.utils.parsedate_to_datetime(raw))
        except (TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ transport
    def _describe_exc(self, exc: BaseException) -> str:
        reason: Any = exc.args[0] if exc.args else exc
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError -> its cause
        text = _URL_RE.sub("<url>", str(reason))[:200]
        return self._redact(f"{type(exc).__name__} ({text})" if text else type(exc).__name__)

    def _server_message(self, resp: requests.Response) -> str:
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
        return self._redact(str(msg)[:1000])

    @staticmethod
    def _seconds(value: Any) -> float | None:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None

    def _retry_after(self, resp: requests.Response) -> float | None:
        value = resp.headers.get("Retry-After")
        if value is None:
            return None
        seconds = self._seconds(value)
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(value)
                seconds = max(0.0, (_utc(when) - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
        return seconds

    def _rate_limit_wait(self, resp: requests.Response) -> float:
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
        candidates.append(self._retry_after(resp))
        info = parse_ratelimit(resp.headers.get("RateLimit"))
        candidates.append(info.reset if info else None)
        for value in candidates:
            seconds = self._seconds(value)
            if seconds is not None:
                return min(seconds, 600.0)
        return 1.0

    def _backoff(self, failures: int) -> float:
        return random.uniform(0, min(self._backoff_cap, self._backoff_base * 2 ** (failures - 1)))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        not_found_ok: bool = False,
        decoder: msgspec.json.Decoder | None = None,
    ) -> Any:
        """One logical request with pacing and retries; returns the decoded JSON body (a dict, or
        what `decoder` makes of it).

        The attempts that fail and the backoff between them share `request_deadline`: each
        attempt's timeouts are cut to what is left of it, so a request fails within the deadline
        however the server misbehaves (answers nothing, answers 5xx slowly, ...)."""
        url = self._base_url + path
        pacer = self._limiter.group(endpoint_group(path))
        failures = 0  # attempts that failed retryably (5xx, network, bad body)
        throttled = 0  # 429 answers
        spent = 0.0  # seconds of failed attempts and backoff, against the request deadline
        while True:
            left = self._request_deadline - spent
            paced = pacer.acquire()
            self.counters.add(requests=1, seconds_paced=paced)
            started = time.perf_counter()
            resp: requests.Response | None = None
            timeout = (min(self._timeout[0], left), min(self._timeout[1], left))
            try:
                resp = self._session.request(
                    method, url, params=params, data=body, headers=headers, timeout=timeout
                )
            except _RETRYABLE_EXC as exc:
                pacer.release(None, answered=False)
                outcome: Any = _Retryable(self._describe_exc(exc))
            except BaseException as exc:
                pacer.release(None, answered=False)
                if isinstance(exc, requests.exceptions.RequestException):
                    raise CloseApiError(
                        f"Close API {method} {path} failed: {self._describe_exc(exc)}",
                        endpoint=path,
                        attempts=failures + throttled + 1,
                    ) from None
                raise
            else:
                pacer.release(parse_ratelimit(resp.headers.get("RateLimit")))
                date = resp.headers.get("Date")
                if date:
                    self._last_date = date
            if resp is not None:
                status = resp.status_code
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "%s %s -> %s (%d bytes, %.0f ms)",
                        method,
                        path,
                        status,
                        len(resp.content),
                        (time.perf_counter() - started) * 1000,
                    )
                if status == 429:
                    throttled += 1
                    wait = self._rate_limit_wait(resp)
                    pacer.pause(wait)
                    self.counters.add(rate_limited=1, seconds_waited=wait)
                    if throttled > self._max_rate_limit_retries:
                        raise CloseApiError(
                            f"Close API {method} {path}: still rate limited (HTTP 429) after "
                            f"{throttled} answers in a row; giving up after "
                            f"{failures + throttled} attempts",
                            endpoint=path,
                            status=429,
                            attempts=failures + throttled,
                        )
                    log.warning(
                        "Close API %s %s rate limited (429, group %s); pausing the group %.2f s",
                        method,
                        path,
                        pacer.name,
                        wait,
                    )
                    continue
                outcome = self._handle(
                    resp, method, path, not_found_ok, failures + throttled + 1, decoder
                )
                if not isinstance(outcome, _Retryable):
                    return outcome
            # a retryable failure
            failures += 1
            spent += time.perf_counter() - started
            left = self._request_deadline - spent
            if failures >= self._max_attempts or left <= 0.001:
                cause = (
                    ""
                    if left > 0.001
                    else (
                        f"; no usable answer within the {self._request_deadline:g} s request deadline"
                    )
                )
                raise CloseApiError(
                    f"Close API {method} {path} failed after {failures + throttled} attempts "
                    f"({failures} failed, {throttled} rate limited) in {spent:.1f} s{cause}; "
                    f"last error: {outcome.description} (endpoint {url})",
                    endpoint=path,
                    status=outcome.status,
                    attempts=failures + throttled,
                )
            delay = self._backoff(failures)
            if outcome.wait is not None:
                delay = max(delay, min(outcome.wait, self._backoff_cap))
            delay = min(delay, left / 2)  # leave most of what is left to the next attempt
            spent += delay
            self.counters.add(retries=1, seconds_waited=delay)
            log.warning(
                "Close API %s %s attempt %d/%d failed (%s); retrying in %.2f s",
                method,
                path,
                failures,
                self._max_attempts,
                outcome.description,
                delay,
            )
            time.sleep(delay)

    def _handle(
        self,
        resp: requests.Response,
        method: str,
        path: str,
        not_found_ok: bool,
        attempts: int,
        decoder: msgspec.json.Decoder | None,
    ) -> Any:
        status = resp.status_code
        if 200 <= status < 300:
            content = resp.content
            expected = resp.headers.get("Content-Length")
            if (
                expected is not None
                and expected.isdigit()
                and not resp.headers.get("Content-Encoding")
                and int(expected) != len(content)
            ):
                return _Retryable(
                    f"truncated body (HTTP {status}, {len(content)} of {expected} bytes)", status
                )
            if decoder is not None:
                try:
                    return decoder.decode(content)
                except msgspec.DecodeError as exc:  # a bad record, or a body of the wrong shape
                    split = pages.split_page(content)
                    if split is None:
                        return _Retryable(
                            f"body is not a valid page (HTTP {status}: {exc})", status
                        )
                    log.warning(
                        "Close API %s %s: page does not decode (%s); split it into %d records "
                        "(%d not well formed)",
                        method,
                        path,
                        exc,
                        len(split.records),
                        split.broken,
                    )
                    return _LenientPage(split.records, split.members.get("has_more"), split.broken)
            try:
                data = orjson.loads(content)
            except orjson.JSONDecodeError as exc:
                data = pages.loads_lenient(content)
                if data is None:
                    return _Retryable(f"body is not valid JSON (HTTP {status}: {exc})", status)
                log.warning(
                    "Close API %s %s: body does not decode (%s); read it record by record",
                    method,
                    path,
                    exc,
                )
            if not isinstance(data, dict):
                return _Retryable(f"body is not a JSON object (HTTP {status})", status)
            return data
        if status in (401, 403):
            what = "rejected the credentials" if status == 401 else "refused access"
            raise CloseAuthError(
                f"Close API {what} (HTTP {status} on {method} {path}: "
                f"{self._server_message(resp)}). " + _AUTH_HELP.format(base=self._base_url),
                endpoint=path,
                status=status,
                attempts=attempts,
            )
        if status == 404 and not_found_ok:
            return None
        if status in _RETRYABLE_STATUS or (status >= 500 and status not in (501, 505)):
            return _Retryable(f"HTTP {status}", status, wait=self._retry_after(resp))
        message = self._server_message(resp)
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

    def _get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self._request("GET", path, params=params, **kw)

    # ------------------------------------------------------------------ calls by date_created
    def _learn_max_skip(self, exc: MaxSkipExceeded, failed_skip: int) -> None:
        # The skip that failed is above the cap, whatever the message says.
        learned = failed_skip - 1 if exc.max_skip is None else min(exc.max_skip, failed_skip - 1)
        with self._max_skip_lock:
            if learned < 0:
                raise exc
            if learned < self._max_skip:
                log.warning(
                    "Close API says max_skip = %d for %s (was %d); splitting windows below it",
                    learned,
                    exc.endpoint,
                    self._max_skip,
                )
                self._max_skip = learned

    def _window_params(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"date_created__gte": format_ts(start), "date_created__lt": format_ts(end)}

    def _window_fits(self, start: datetime, end: datetime, max_skip: int) -> bool:
        """Can offset paging reach every call of [start, end) without a _skip above max_skip?"""
        ps = self._page_size
        last_skip = (max_skip // ps) * ps
        params = self._window_params(start, end)
        params.update({"_skip": last_skip, "_limit": ps, "_fields": "id"})
        try:
            page = self._get("/activity/call/", params)
        except MaxSkipExceeded as exc:
            self._learn_max_skip(exc, last_skip)
            return self._window_fits(start, end, self._max_skip)
        return not page.get("has_more")

    def _call_page(self, method: str, params: dict[str, Any]) -> tuple[list[bytes], bool, int]:
        """One page of the call list: each call's JSON text as received, `has_more`, and how
        far the offset moves. A page that had to be split (see `pages`) and says more follow
        moves it by a full page, so that records run together cannot shift the next offset."""
        if method == "GET":
            page = self._get("/activity/call/", params, decoder=_CALL_PAGE)
        else:  # the `_params` body form, for id lists too long for a URL
            page = self._request(
                "POST",
                "/activity/call/",
                body=orjson.dumps({"_params": params}),
                headers={"x-http-method-override": "GET", "Content-Type": "application/json"},
                decoder=_CALL_PAGE,
            )
        if isinstance(page, _LenientPage):
            has_more = bool(page.has_more)
            advance = len(page.data)
            if has_more and page.broken:
                advance = max(advance, int(params.get("_limit") or self._page_size))
            return page.data, has_more, advance
        data = [bytes(call) for call in page.data or ()]
        return data, bool(page.has_more), len(data)

    def _walk_window(self, start: datetime, end: datetime) -> Iterator[WindowPage]:
        """Offset-page one window; returns True (StopIteration value) when it must be split."""
        ps = self._page_size
        base = self._window_params(start, end)
        skip = 0
        probed = False
        held: list[WindowPage] = []
        while True:
            max_skip = self._max_skip
            if skip > max_skip:
                return True
            # Past the first page(s), one cheap probe at the last reachable offset tells whether
            # the window fits under the cap; if not, split now instead of walking up to the cap.
            threshold = max(ps, max_skip // 20)
            if not probed and skip >= threshold:
                probed = True
                if not self._window_fits(start, end, max_skip):
                    return True
                yield from held
                held.clear()
                continue
            params = dict(base, _skip=skip, _limit=ps, _fields=self._fields)
            try:
                data, has_more, advance = self._call_page("GET", params)
            except MaxSkipExceeded as exc:
                self._learn_max_skip(exc, skip)
                return True
            if data:
                page = WindowPage(data, start, end, skip)
                if not probed and threshold <= 4 * ps:
                    held.append(page)  # few pages: hold them until the probe says "fits"
                else:
                    yield page
            if not has_more or not data:
                yield from held
                return False
            skip += advance

    def iter_call_window(self, start: datetime, end: datetime) -> Iterator[list[bytes]]:
        """Pages of every call with ``start <= date_created < end``, each call as the JSON text
        Close sent (``records.type_calls`` types them). See `iter_call_window_pages`."""
        for page in self.iter_call_window_pages(start, end):
            yield page.calls

    def iter_call_window_pages(self, start: datetime, end: datetime) -> Iterator[WindowPage]:
        """Pages of every call with ``start <= date_created < end``, with where each was read.

        Windows whose offsets would pass ``max_skip`` are split at their midpoint, depth first,
        newest half first: Close lists calls newest first, so the calls of a window keep coming
        newest first across a split (but for the pages read before it, which come again: dedupe
        by id). A caller can then tell how far down a window it has read.
        """
        start, end = _utc(start), _utc(end)
        stack = [(start, end)] if start < end else []
        while stack:
            s, e = stack.pop()
            must_split = yield from self._walk_window(s, e)
            if must_split:
                if e - s < MIN_WINDOW:
                    raise CloseApiError(
                        f"Close API /activity/call/: more calls than max_skip={self._max_skip} "
                        f"allows in the window [{format_ts(s)}, {format_ts(e)}), which is too "
                        "short to split further",
                        endpoint="/activity/call/",
                    )
                mid = s + (e - s) / 2
                log.debug("splitting call window [%s, %s) at %s", s, e, mid)
                stack.append((s, mid))
                stack.append((mid, e))

    def has_calls_before(self, t: datetime) -> bool:
        """Is there any call with ``date_created < t``? (One request.)"""
        page = self._get(
            "/activity/call/", {"date_created__lt": format_ts(t), "_limit": 1, "_fields": "id"}
        )
        return bool(page.get("data"))

    # ------------------------------------------------------------------ calls by id
    def get_call(self, call_id: str) -> dict | None:
        """One call with every field, or None when it does not exist (404)."""
        return self._get(
            f"/activity/call/{quote(str(call_id), safe='')}/",
            {"_fields": self._fields},
            not_found_ok=True,
        )

    def _fetch_ids(self, ids: list[str]) -> Iterator[list[bytes]]:
        skip = 0
        while True:
            params: dict[str, Any] = {
                "id__in": ",".join(ids),
                "_fields": self._fields,
                "_limit": IDS_PER_REQUEST,
            }
            if skip:
                params["_skip"] = skip
            data, has_more, advance = self._call_page("POST", params)
            if data:
                yield data
            if not has_more or not data:
                return
            skip += advance

    def iter_calls_by_ids(self, ids: Iterable[str]) -> Iterator[list[bytes]]:
        """Calls (JSON text as received) for the given ids in batches of <= 100 ids, one
        ``_params`` request each. Ids that do not exist (deleted) are simply absent."""
        batch: dict[str, None] = {}
        for call_id in ids:
            batch[call_id] = None
            if len(batch) == IDS_PER_REQUEST:
                yield from self._fetch_ids(list(batch))
                batch = {}
        if batch:
            yield from self._fetch_ids(list(batch))

    # ------------------------------------------------------------------ events
    def iter_events(
        self, action: str, since: datetime, object_type: str = "activity.call"
    ) -> Iterator[dict | Unreadable]:
        """Event Log events of ``object_type``/``action`` with ``date_updated >= since``, newest
        first, following ``cursor_next``; each event id is yielded once. An event that does not
        parse is yielded as an `Unreadable` (whose `get` reads what its text still says)."""
        params: dict[str, Any] = {
            "object_type": object_type,
            "action": action,
            "date_updated__gte": format_ts(since),
            "_limit": EVENT_PAGE_LIMIT,
        }
        seen: set[str] = set()
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            page = self._get("/event/", dict(params, _cursor=cursor) if cursor else params)
            for event in page.get("data") or []:
                event_id = event.get("id")
                if event_id in seen:
                    continue
                seen.add(event_id)
                yield event
            cursor = page.get("cursor_next")
            if not cursor:
                return
            if cursor in cursors:
                raise CloseApiError(
                    "Close API /event/ returned a cursor it had already returned (paging loop)",
                    endpoint="/event/",
                )
            cursors.add(cursor)

    # ------------------------------------------------------------------ reference data
    def _list_all(self, path: str) -> list[dict | Unreadable]:
        out: list[dict] = []
        skip = 0
        while True:
            page = self._get(path, {"_skip": skip, "_limit": 100})
            data = page.get("data") or []
            out.extend(data)
            if not page.get("has_more") or not data:
                return out
            skip += len(data)

    def list_outcomes(self) -> list[dict | Unreadable]:
        return self._list_all("/outcome/")

    def list_users(self) -> list[dict | Unreadable]:
        return self._list_all("/user/")

    def me(self) -> dict:
        return self._get("/me/")
