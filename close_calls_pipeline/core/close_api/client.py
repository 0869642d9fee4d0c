"""The Close API endpoints a call connector needs, on top of the transport (:mod:`.transport`).

Calls in a ``date_created`` window (splitting the window before the ``_skip`` cap), calls by id
(the ``_params`` body form), Event Log events, outcomes, users and the key's own user (``/me/``).
See ``docs/close-api.md`` (the contract) for the facts this is built on. The credential
and what keeps it out of messages are in :mod:`.redaction`; answers that do not decode in
:mod:`.answers` and :mod:`.pages`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Self

import msgspec
import orjson

from close_calls_pipeline.core import config
from close_calls_pipeline.core.call_fields import (
    DOCUMENTED_CALL_FIELDS,
    TRANSCRIPT_FIELDS,
    UNDOCUMENTED_CALL_FIELDS,
)

from .answers import LenientPage, utc
from .errors import CloseApiError, MaxSkipExceeded
from .pages import Unreadable
from .redaction import authorization
from .transport import Counters, Transport

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = config.DEFAULT_BASE_URL

# Every documented Call field (docs/close-api.md), both transcripts (returned only when named), and the
# undocumented fields seen in the wild. Asking for a field the server does not have is harmless.
CALL_FIELDS: tuple[str, ...] = (
    *DOCUMENTED_CALL_FIELDS,
    *TRANSCRIPT_FIELDS,
    *UNDOCUMENTED_CALL_FIELDS,
)

EVENT_PAGE_LIMIT = 50  # the Event Log's maximum _limit
IDS_PER_REQUEST = 100  # id__in batch size (the call list's maximum _limit)
MIN_WINDOW = timedelta(milliseconds=1)


class _CallPage(msgspec.Struct):
    """A page of the call list, decoded only as far as paging needs: each call stays the raw
    JSON text Close sent, so it is parsed once, in bulk, by the landing (see `records`)."""

    data: list[msgspec.Raw] | None = None
    has_more: bool | None = None


_CALL_PAGE = msgspec.json.Decoder(_CallPage)


class WindowPage(NamedTuple):
    """A page of `iter_call_window_pages`: the calls, and where they were read. Offset paging
    within one (sub)window returns calls newest `date_created` first; `skip == 0` starts a new
    sequence (a window, or a half of a split one)."""

    calls: list[bytes]
    start: datetime
    end: datetime
    skip: int


def format_ts(dt: datetime) -> str:
    """ISO 8601 with microseconds and an explicit ``+00:00`` offset."""
    return utc(dt).isoformat(timespec="microseconds")


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
        auth, self._auth_kind, redactor = authorization(api_key, access_token)
        if page_size < 1 or max_skip < 0:
            raise ValueError("page_size must be >= 1 and max_skip >= 0")
        self._transport = Transport(
            base_url,
            auth,
            redactor,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_deadline=request_deadline,
            max_attempts=max_attempts,
            max_rate_limit_retries=max_rate_limit_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self._pool_size = pool_size
        self._page_size = min(page_size, 100)
        self._max_skip = max_skip
        self._max_skip_lock = threading.Lock()
        if isinstance(extra_call_fields, str):
            extra_call_fields = tuple(f for f in extra_call_fields.split(",") if f)
        self._fields = ",".join(dict.fromkeys(CALL_FIELDS + tuple(extra_call_fields)))

    # ------------------------------------------------------------------ housekeeping
    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def counters(self) -> Counters:
        return self._transport.counters

    @property
    def max_skip(self) -> int:
        return self._max_skip

    def __repr__(self) -> str:
        return (
            f"CloseClient(base_url={self.base_url!r}, auth={self._auth_kind!r}, "
            f"pool_size={self._pool_size})"
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> None:
        raise TypeError("CloseClient holds a credential and a connection pool; do not pickle it")

    def server_now(self) -> datetime | None:
        """The server's clock (aware UTC, 1 s resolution) from the latest response's Date header."""
        return self._transport.server_now()

    def _get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self._transport.request("GET", path, params=params, **kw)

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
            page = self._transport.request(
                "POST",
                "/activity/call/",
                body=orjson.dumps({"_params": params}),
                headers={"x-http-method-override": "GET", "Content-Type": "application/json"},
                decoder=_CALL_PAGE,
            )
        if isinstance(page, LenientPage):
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

    def iter_call_window_pages(self, start: datetime, end: datetime) -> Iterator[WindowPage]:
        """Pages of every call with ``start <= date_created < end``, with where each was read.

        Windows whose offsets would pass ``max_skip`` are split at their midpoint, depth first,
        newest half first: Close lists calls newest first, so the calls of a window keep coming
        newest first across a split (but for the pages read before it, which come again: dedupe
        by id). A caller can then tell how far down a window it has read.
        """
        start, end = utc(start), utc(end)
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
