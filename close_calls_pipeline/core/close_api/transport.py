"""How the client talks to Close: one session, rate-limit pacing, retries, and a deadline per request.

* one ``requests.Session`` (keep-alive, a connection pool sized for the worker threads, no urllib3
  retries, connect/read timeouts on every attempt), safe to share between threads;
* per endpoint-group rate-limit pacing shared by all threads (:mod:`.ratelimit`), 429 pauses;
* bounded retries with full-jitter exponential backoff on 5xx, network faults, cut bodies and
  bodies that are not JSON at all (:mod:`.answers`), within a per-request deadline that bounds
  each attempt's whole duration (:mod:`.watchdog`): a server that never answers, or answers one
  byte at a time, fails a request in ``request_deadline`` seconds;
* the first retry of an endpoint is a warning, later ones are logged at debug level and counted
  (`Counters`); a request that cannot connect at all fails saying to check the base URL.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import threading
import time
from datetime import datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3.exceptions
from urllib3.util.retry import Retry

from close_calls_pipeline.core import config

from .answers import Retryable, rate_limit_wait, read_answer, utc
from .errors import CloseApiError
from .ratelimit import GroupPacer, RateLimiter, endpoint_group, parse_ratelimit
from .redaction import HeaderAuth, Redactor
from .watchdog import Watchdog, WatchedAdapter

log = logging.getLogger(__name__)

_RETRYABLE_EXC = (
    requests.exceptions.ConnectionError,  # refused, reset, RemoteDisconnected, ConnectTimeout, ...
    requests.exceptions.Timeout,  # ReadTimeout
    requests.exceptions.ChunkedEncodingError,  # body cut (urllib3 enforces Content-Length)
    requests.exceptions.ContentDecodingError,
)
# The watchdog cuts an attempt this long after its socket timeouts would have expired, so that a
# timeout that ends the attempt at the deadline reports itself (ReadTimeout) rather than the cut.
_CUT_GRACE_SECONDS = 0.5


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; refused when the key could leak through it."""
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
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"Refusing plain http:// to non-loopback host {parts.hostname!r}: the API key would "
            "travel unencrypted. Use https:// (CLOSE_API_BASE_URL); http:// is only allowed for "
            "127.0.0.0/8, ::1 and localhost (the sandbox)."
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _unreachable(exc: BaseException) -> bool:
    """No connection could be made: refused, unknown host, no route, connect timeout."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)  # incl. NameResolutionError


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


class Transport:
    """Sends one logical request with pacing, retries and a deadline; thread-safe."""

    def __init__(
        self,
        base_url: str,
        auth: HeaderAuth,
        redactor: Redactor,
        *,
        pool_size: int,
        connect_timeout: float,
        read_timeout: float,
        request_deadline: float,
        max_attempts: int,
        max_rate_limit_retries: int,
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        if max_attempts < 1 or pool_size < 1:
            raise ValueError("max_attempts and pool_size must be >= 1")
        if min(connect_timeout, read_timeout, request_deadline) <= 0:
            raise ValueError("connect_timeout, read_timeout and request_deadline must be > 0")
        self.base_url = check_base_url(base_url or config.DEFAULT_BASE_URL)
        self._redactor = redactor
        self._timeout = (connect_timeout, read_timeout)
        # A request's attempts that fail (no answer, 5xx, cut body) and the backoff between them
        # fit in this many seconds; waits the rate limit imposes (429, pacing) are not counted.
        self._request_deadline = request_deadline
        self._max_attempts = max_attempts
        self._max_rate_limit_retries = max_rate_limit_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._session = self._new_session(auth, pool_size)
        self._watchdog = Watchdog()
        self._limiter = RateLimiter()
        self.counters = Counters()
        self._last_date: str | None = None
        self._warned: set[str] = set()  # endpoints whose retries were already warned about
        self._warned_lock = threading.Lock()

    def _new_session(self, auth: HeaderAuth, pool_size: int) -> requests.Session:
        session = requests.Session()
        adapter = WatchedAdapter(
            pool_connections=2,
            pool_maxsize=pool_size,
            max_retries=Retry(total=0, connect=0, read=False, redirect=0, status=0),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.auth = auth
        session.headers.update(
            {"Accept": "application/json", "User-Agent": "close-calls-pipeline/0.1 (requests)"}
        )
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless
        if is_loopback(urlsplit(self.base_url).hostname or ""):
            session.trust_env = False  # never send the sandbox through an environment proxy
        return session

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()

    def server_now(self) -> datetime | None:
        """The server's clock (aware UTC, 1 s resolution) from the latest response's Date header."""
        raw = self._last_date
        if not raw:
            return None
        try:
            return utc(email.utils.parsedate_to_datetime(raw))
        except (TypeError, ValueError):
            return None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        decoder: msgspec.json.Decoder | None = None,
    ) -> Any:
        """One logical request with pacing and retries; returns the decoded JSON body (a dict, or
        what `decoder` makes of it).

        The attempts that fail and the backoff between them share `request_deadline`: each
        attempt's timeouts are cut to what is left of it, and so is its whole duration (the
        watchdog), so a request fails within the deadline however the server misbehaves
        (answers nothing, answers 5xx slowly, sends one byte at a time, ...)."""
        pacer = self._limiter.group(endpoint_group(path))
        send = {"params": params, "data": body, "headers": headers}
        failures = 0  # attempts that failed retryably (5xx, network, bad body, deadline)
        throttled = 0  # 429 answers
        spent = 0.0  # seconds of failed attempts and backoff, against the request deadline
        while True:
            left = self._request_deadline - spent
            outcome, seconds = self._attempt(pacer, method, path, left, failures + throttled, send)
            if isinstance(outcome, requests.Response):
                if outcome.status_code == 429:
                    throttled += 1
                    self._rate_limited(outcome, pacer, method, path, failures, throttled)
                    continue
                outcome = read_answer(
                    outcome,
                    method,
                    path,
                    attempts=failures + throttled + 1,
                    decoder=decoder,
                    redactor=self._redactor,
                    base_url=self.base_url,
                )
                if not isinstance(outcome, Retryable):
                    return outcome
            failures += 1
            spent += seconds
            left = self._request_deadline - spent
            if failures >= self._max_attempts or left <= 0.001:
                raise self._gave_up(method, path, outcome, failures, throttled, spent, left)
            delay = self._backoff(failures)
            if outcome.wait is not None:
                delay = max(delay, min(outcome.wait, self._backoff_cap))
            delay = min(delay, left / 2)  # leave most of what is left to the next attempt
            spent += delay
            self.counters.add(retries=1, seconds_waited=delay)
            self._log_retry(method, path, failures, outcome, delay)
            time.sleep(delay)

    def _attempt(
        self, pacer: GroupPacer, method: str, path: str, left: float, made: int, send: dict
    ) -> tuple[requests.Response | Retryable, float]:
        """One HTTP exchange within `left` seconds: the answer, or a `Retryable` when it failed
        in a way worth retrying; and the seconds it took (pacing excluded)."""
        paced = pacer.acquire()
        self.counters.add(requests=1, seconds_paced=paced)
        started = time.perf_counter()
        timeout = (min(self._timeout[0], left), min(self._timeout[1], left))
        with self._watchdog.watch(left + _CUT_GRACE_SECONDS) as attempt:
            try:
                resp = self._session.request(method, self.base_url + path, timeout=timeout, **send)
            except BaseException as exc:
                pacer.release(None, answered=False)
                seconds = time.perf_counter() - started
                if isinstance(exc, Exception) and attempt.cut:
                    return self._cut(seconds), seconds
                if isinstance(exc, _RETRYABLE_EXC):
                    description = self._redactor.describe_exc(exc)
                    return Retryable(description, unreachable=_unreachable(exc)), seconds
                if isinstance(exc, requests.exceptions.RequestException):
                    raise CloseApiError(
                        f"Close API {method} {path} failed: {self._redactor.describe_exc(exc)}",
                        endpoint=path,
                        attempts=made + 1,
                    ) from None
                raise
        pacer.release(parse_ratelimit(resp.headers.get("RateLimit")))
        date = resp.headers.get("Date")
        if date:
            self._last_date = date
        seconds = time.perf_counter() - started
        if attempt.cut:  # the answer ended when the watchdog cut it: it is not whole
            return self._cut(seconds), seconds
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %s (%d bytes, %.0f ms)",
                method,
                path,
                resp.status_code,
                len(resp.content),
                seconds * 1000,
            )
        return resp, seconds

    def _cut(self, seconds: float) -> Retryable:
        return Retryable(f"answer still incomplete after {seconds:.1f} s, cut at the deadline")

    def _rate_limited(
        self,
        resp: requests.Response,
        pacer: GroupPacer,
        method: str,
        path: str,
        failures: int,
        throttled: int,
    ) -> None:
        """A 429: pause the endpoint group for the server's wait, or give up after too many."""
        wait = rate_limit_wait(resp)
        pacer.pause(wait)
        self.counters.add(rate_limited=1, seconds_waited=wait)
        if throttled > self._max_rate_limit_retries:
            raise CloseApiError(
                f"Close API {method} {path}: still rate limited (HTTP 429) after "
                f"{throttled} answers in a row; giving up after {failures + throttled} attempts",
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

    def _gave_up(
        self,
        method: str,
        path: str,
        outcome: Retryable,
        failures: int,
        throttled: int,
        spent: float,
        left: float,
    ) -> CloseApiError:
        cause = (
            ""
            if left > 0.001
            else f"; no usable answer within the {self._request_deadline:g} s request deadline"
        )
        message = (
            f"{method} {path} failed after {failures + throttled} attempts "
            f"({failures} failed, {throttled} rate limited) in {spent:.1f} s{cause}; "
            f"last error: {outcome.description} (endpoint {self.base_url + path})"
        )
        if outcome.unreachable:
            host = urlsplit(self.base_url).netloc
            message = (
                f"Cannot connect to the Close API at {host}: {message}. Check the base URL "
                f"(CLOSE_API_BASE_URL, now {self.base_url}) and the network."
            )
        else:
            message = f"Close API {message}"
        return CloseApiError(
            message, endpoint=path, status=outcome.status, attempts=failures + throttled
        )

    def _backoff(self, failures: int) -> float:
        return random.uniform(0, min(self._backoff_cap, self._backoff_base * 2 ** (failures - 1)))

    def _log_retry(
        self, method: str, path: str, failures: int, outcome: Retryable, delay: float
    ) -> None:
        """The first retry of an endpoint is a warning; later ones go to debug (the counters
        keep the numbers), so a flaky server or a wrong URL does not flood the log."""
        with self._warned_lock:
            first = path not in self._warned
            self._warned.add(path)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "Close API %s %s attempt %d/%d failed (%s); retrying in %.2f s%s",
            method,
            path,
            failures,
            self._max_attempts,
            outcome.description,
            delay,
            " (further retries of this endpoint are logged at debug level)" if first else "",
        )
