"""The sandbox Close API over real HTTP (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive).

Responses are written as one pre-assembled buffer (status line, headers, body); list pages are
spliced from the store's pre-serialized call bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import random
import socket
import sys
import threading
import time
from collections import Counter
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from close_calls_pipeline.core import config
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS, live_size, parse_ts
from close_calls_pipeline.sandbox.store import SandboxStore

API_PREFIX = "/api/v1"
CALL_LIST_MAX_LIMIT = 100
EVENT_MAX_LIMIT = 50
FAIL_KINDS = ("500", "502", "503", "cut", "429", "garbage")

# supported /event/ filter combinations (date_updated__* aside)
EVENT_COMBOS = {
    frozenset(),
    frozenset({"object_type", "action"}),
    frozenset({"object_id"}),
    frozenset({"object_type", "object_id"}),
    frozenset({"lead_id"}),
    frozenset({"lead_id", "object_type"}),
    frozenset({"lead_id", "object_type", "action"}),
    frozenset({"user_id"}),
    frozenset({"user_id", "object_type"}),
    frozenset({"user_id", "object_type", "action"}),
}
EVENT_FILTERS = ("object_type", "action", "object_id", "lead_id", "user_id")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class _ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _route(path: str) -> tuple[str, str, str | None]:
    """(endpoint name, rate-limit group, call id for the single-call endpoint)."""
    if not path.startswith(API_PREFIX + "/"):
        return "other", "other", None
    rest = path[len(API_PREFIX) :]
    if not rest.endswith("/"):
        rest += "/"
    if rest == "/activity/call/":
        return "activity.call.list", "activity", None
    if rest.startswith("/activity/call/") and rest.count("/") == 4:
        return "activity.call.get", "activity", unquote(rest[len("/activity/call/") : -1])
    if rest.startswith("/activity/"):
        return "other", "activity", None
    if rest == "/event/":
        return "event.list", "event", None
    if rest == "/outcome/":
        return "outcome.list", "other", None
    if rest == "/user/":
        return "user.list", "other", None
    if rest == "/me/":
        return "me", "other", None
    return "other", "other", None


def _encode_cursor(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([key[0], key[1]])).decode("ascii").rstrip("=")


def _decode_cursor(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        du, eid = orjson.loads(raw)
        if not isinstance(du, int) or not isinstance(eid, str):
            raise TypeError("cursor fields")
        return du, eid
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise _ApiError(
            400, "Invalid cursor: pass the cursor_next value of a previous page."
        ) from exc


def _int_param(params: dict, name: str, default: int) -> int:
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise _ApiError(400, f"{name} must be an integer") from None
    if n < 0:
        raise _ApiError(400, f"{name} must be >= 0")
    return n


def _bounds(params: dict, field: str) -> dict:
    out = {}
    for op in ("gt", "gte", "lt", "lte"):
        v = params.get(f"{field}__{op}")
        if v is None:
            continue
        try:
            out[op] = parse_ts(v)
        except (ValueError, TypeError):
            raise _ApiError(
                400, f"{field}__{op}: '{v}' is not a valid ISO 8601 date or date-time"
            ) from None
    return out


def _id_set(params: dict, name: str) -> set | None:
    v = params.get(name)
    if v is None:
        return None
    return {x for x in v.split(",") if x}


class _RateLimiter:
    """Fixed 1-second windows on time.monotonic(), per (api key, endpoint group)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows: dict[tuple[str, str], tuple[int, int]] = {}

    def hit(self, key: str, group: str, rps: float) -> tuple[bool, int, int, float]:
        limit = max(1, int(rps))
        now = time.monotonic()
        window = int(now)
        reset = (window + 1) - now
        with self.lock:
            w, count = self.windows.get((key, group), (window, 0))
            if w != window:
                count = 0
            if count >= limit:
                self.windows[(key, group)] = (window, count)
                return False, limit, 0, reset
            count += 1
            self.windows[(key, group)] = (window, count)
            return True, limit, limit - count, reset


class SandboxServer:
    """The sandbox API server around a SandboxStore."""

    def __init__(
        self,
        store: SandboxStore,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        rps: float | None = None,
        fault_rate: float = 0.0,
        max_skip: int = config.CLOSE_MAX_SKIP,
        seed: int = 0,
    ):
        self.store = store
        self.api_key = api_key
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.rps = rps
        self.fault_rate = fault_rate
        self.max_skip = max_skip
        self._fault_rng = random.Random(f"faults:{seed}")
        self._lock = threading.Lock()
        self._stats: Counter = Counter()
        self._requests = 0
        self._fail_queue: list[list] = []  # [remaining, kind, group]
        self._limiter = _RateLimiter()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._date_cache: tuple[int, bytes] = (-1, b"")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"sandbox": self})
        httpd = ThreadingHTTPServer((self.host, self.port), handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.allow_reuse_address = True
        httpd.request_queue_size = 256
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"close-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # ------------------------------------------------------------------ test hooks

    def stats(self) -> dict:
        with self._lock:
            return {"requests": self._requests, "by_endpoint": dict(self._stats)}

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._requests = 0

    def fail_next(self, n: int, kind: str, group: str | None = None) -> None:
        """Make the next `n` requests (of endpoint group `group`, or any) fail as `kind`."""
        if kind not in FAIL_KINDS:
            raise ValueError(f"kind must be one of {FAIL_KINDS}")
        if group not in (None, "activity", "event", "other"):
            raise ValueError("group must be None, 'activity', 'event' or 'other'")
        with self._lock:
            self._fail_queue.append([n, kind, group])

    # ------------------------------------------------------------------ internals

    def _count(self, endpoint: str, status: int) -> None:
        with self._lock:
            self._requests += 1
            self._stats[(endpoint, status)] += 1

    def _take_fault(self, group: str) -> str | None:
        with self._lock:
            for entry in self._fail_queue:
                if entry[2] is None or entry[2] == group:
                    entry[0] -= 1
                    if entry[0] <= 0:
                        self._fail_queue.remove(entry)
                    return entry[1]
            if self.fault_rate > 0 and self._fault_rng.random() < self.fault_rate:
                return self._fault_rng.choice(("500", "502", "503", "cut"))
        return None

    def _date_header(self) -> bytes:
        now_s = self.store.now_us // 1_000_000
        cached = self._date_cache
        if cached[0] == now_s:
            return cached[1]
        value = format_datetime(self.store.now, usegmt=True).encode("ascii")
        self._date_cache = (now_s, value)
        return value


def _params_from_body(body: bytes) -> dict:
    try:
        doc = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise _ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _ApiError(400, "Request body must be a JSON object")
    p = doc.get("_params", {})
    if not isinstance(p, dict):
        raise _ApiError(400, "_params must be a JSON object")
    out = {}
    for k, v in p.items():
        if isinstance(v, list):
            out[k] = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif v is None:
            continue
        else:
            out[k] = str(v)
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sandbox: SandboxServer  # set on the subclass
    server_version = "close-sandbox"

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if (self.headers.get("x-http-method-override") or "").upper() != "GET":
            self._serve(b"__not_allowed__")
            return
        self._serve(body)

    do_PUT = do_DELETE = do_PATCH = do_POST

    # ------------------------------------------------------------------ core

    def _serve(self, post_body: bytes | None) -> None:
        sb = self.sandbox
        store = sb.store
        store.sync()
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/_sandbox/stats":
            if not self._authorized():
                self._send(401, b'{"error":"Unauthorized"}')
                return
            st = sb.stats()
            doc = {
                "requests": st["requests"],
                "by_endpoint": {f"{e} {s}": c for (e, s), c in st["by_endpoint"].items()},
            }
            self._send(200, orjson.dumps(doc))
            return
        endpoint, group, call_id = _route(path)
        if sb.latency_ms:
            time.sleep(sb.latency_ms / 1000.0)
        if not self._authorized():
            sb._count(endpoint, 401)
            self._send(401, b'{"error":"Unauthorized"}')
            return
        extra_headers: list[tuple[str, str]] = []
        if sb.rps:
            ok, limit, remaining, reset = sb._limiter.hit(sb.api_key, group, sb.rps)
            rl = f"limit={limit}, remaining={remaining}, reset={reset:.3f}"
            extra_headers.append(("RateLimit", rl))
            if not ok:
                self._send_429(endpoint, limit, reset, extra_headers)
                return
        fault = sb._take_fault(group)
        if fault == "429":
            limit = max(1, int(sb.rps)) if sb.rps else 1
            reset = 0.25
            self._send_429(
                endpoint,
                limit,
                reset,
                [("RateLimit", f"limit={limit}, remaining=0, reset={reset:.3f}")],
            )
            return
        if fault in ("500", "502", "503"):
            status = int(fault)
            sb._count(endpoint, status)
            self._send(
                status, orjson.dumps({"error": f"Sandbox injected {status} error"}), extra_headers
            )
            return
        try:
            if post_body == b"__not_allowed__":
                raise _ApiError(405, "Method not allowed")
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            if post_body is not None:
                params.update(_params_from_body(post_body))
            status, body = self._dispatch(endpoint, call_id, params)
        except _ApiError as exc:
            status, body = exc.status, orjson.dumps({"error": exc.message})
        except Exception as exc:  # noqa: BLE001 - a sandbox bug must answer, not hang up
            print(f"close-sandbox: internal error on {self.path}: {exc!r}", file=sys.stderr)
            status, body = 500, orjson.dumps({"error": f"internal sandbox error: {exc!r}"})
        if fault == "garbage" and status == 200:
            body = b"<html><body>502 Bad Gateway (sandbox garbage)</body>" + body[: len(body) // 3]
            sb._count(endpoint, 200)
            self._send(200, body, extra_headers)
            return
        if fault == "cut":
            sb._count(endpoint, 0)
            self._send(status, body, extra_headers, cut=True)
            return
        sb._count(endpoint, status)
        self._send(status, body, extra_headers)

    def _send_429(self, endpoint: str, limit: int, reset: float, headers: list) -> None:
        self.sandbox._count(endpoint, 429)
        body = orjson.dumps(
            {
                "error": {
                    "rate_reset": round(reset, 3),
                    "message": "API call count exceeded for this period",
                    "rate_limit": limit,
                    "rate_window": 1,
                }
            }
        )
        self._send(429, body, headers + [("Retry-After", str(max(1, math.ceil(reset))))])

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        key = self.sandbox.api_key.encode()
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return hmac.compare_digest(value.encode(), key)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, _, _password = decoded.partition(b":")
            return hmac.compare_digest(user, key)
        return False

    def _send(
        self, status: int, body: bytes, headers: list | None = None, cut: bool = False
    ) -> None:
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Error").encode()),
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Date: " + self.sandbox._date_header() + b"\r\n",
            b"Server: close-sandbox\r\n",
        ]
        for k, v in headers or ():
            head.append(f"{k}: {v}\r\n".encode("latin-1"))
        if cut:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        data = b"".join(head)
        try:
            if cut:
                self.wfile.write(data + body[: len(body) // 2])
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                self.wfile.write(data + body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ endpoints

    def _dispatch(self, endpoint: str, call_id: str | None, params: dict) -> tuple[int, bytes]:
        if endpoint == "activity.call.list":
            return 200, self._call_list(params)
        if endpoint == "activity.call.get":
            return 200, self._call_get(call_id, params)
        if endpoint == "event.list":
            return 200, self._event_list(params)
        store = self.sandbox.store
        if endpoint == "outcome.list":
            return 200, self._simple_list(store.outcomes, params)
        if endpoint == "user.list":
            return 200, self._simple_list(store.users, params)
        if endpoint == "me":
            me = dict(store.users[0])
            me["organizations"] = [{"id": store.organization_id, "name": store.organization_name}]
            return 200, orjson.dumps(me)
        raise _ApiError(404, "Not found")

    @staticmethod
    def _fields(params: dict) -> frozenset | None:
        v = params.get("_fields")
        if v is None:
            return None
        return frozenset(x.strip() for x in v.split(",") if x.strip())

    def _call_list(self, params: dict) -> bytes:
        sb = self.sandbox
        limit = _int_param(params, "_limit", 100)
        if limit > CALL_LIST_MAX_LIMIT:
            raise _ApiError(400, f"_limit must be <= {CALL_LIST_MAX_LIMIT} for this resource")
        skip = _int_param(params, "_skip", 0)
        if skip > sb.max_skip:
            raise _ApiError(
                400,
                "The skip you set is larger than the maximum skip for this "
                f"resource (max_skip = {sb.max_skip}). Please refine your "
                "search query.",
            )
        dc = _bounds(params, "date_created")
        aa = _bounds(params, "activity_at")
        ids = params.get("id__in")
        id_list = [x for x in ids.split(",") if x] if ids is not None else None
        fields = self._fields(params)
        recs, more = sb.store.query_calls(
            dc=dc,
            aa=aa,
            ids=id_list,
            lead_ids=_id_set(params, "lead_id"),
            user_ids=_id_set(params, "user_id"),
            contact_ids=_id_set(params, "contact_id"),
            skip=skip,
            limit=limit,
        )
        items = b",".join([r.render(fields) for r in recs])
        return b'{"data":[' + items + (b'],"has_more":true}' if more else b'],"has_more":false}')

    def _call_get(self, call_id: str | None, params: dict) -> bytes:
        rec = self.sandbox.store.get(call_id or "")
        if rec is None:
            raise _ApiError(404, "Not found: no Call with this id")
        return rec.render(self._fields(params))

    def _event_list(self, params: dict) -> bytes:
        if "_skip" in params:
            raise _ApiError(400, "The event log does not support _skip; page with _cursor.")
        present = frozenset(k for k in EVENT_FILTERS if params.get(k) not in (None, ""))
        if present not in EVENT_COMBOS:
            raise _ApiError(
                400,
                "Unsupported combination of filters: "
                f"{', '.join(sorted(present))}. Supported: object_type+action, "
                "object_id, object_type+object_id, lead_id[+object_type[+action]], "
                "user_id[+object_type[+action]].",
            )
        action = params.get("action")
        if action is not None and action not in ("created", "updated", "deleted"):
            raise _ApiError(400, f"Invalid action: {action}")
        limit = _int_param(params, "_limit", EVENT_MAX_LIMIT)
        limit = min(limit, EVENT_MAX_LIMIT)
        du = _bounds(params, "date_updated")
        cursor = params.get("_cursor")
        after = _decode_cursor(cursor) if cursor else None
        rows, last = self.sandbox.store.events(
            object_type=params.get("object_type"),
            action=action,
            object_id=params.get("object_id"),
            lead_id=params.get("lead_id"),
            user_id=params.get("user_id"),
            du_gt=du.get("gt"),
            du_gte=du.get("gte"),
            du_lt=du.get("lt"),
            du_lte=du.get("lte"),
            after=after,
            limit=limit,
        )
        nxt = orjson.dumps(_encode_cursor(last)) if last is not None else b"null"
        return (
            b'{"data":[' + b",".join(rows) + b'],"cursor_next":' + nxt + b',"cursor_previous":null}'
        )

    @staticmethod
    def _simple_list(items: list[dict], params: dict) -> bytes:
        limit = _int_param(params, "_limit", 100)
        skip = _int_param(params, "_skip", 0)
        page = items[skip : skip + limit]
        return orjson.dumps({"data": page, "has_more": len(items) > skip + limit})


def start_sandbox(
    calls: int = config.SANDBOX_CALLS,
    seed: int = config.SANDBOX_SEED,
    *,
    start=None,
    history_days: int = HISTORY_DAYS,
    live: bool = False,
    organization_id: str | None = None,
    organization_name: str | None = None,
    **server_kwargs,
) -> SandboxServer:
    """Build a store and start a server on it (port 0 = a free port)."""
    store = SandboxStore(
        calls=calls,
        seed=seed,
        start=start,
        history_days=history_days,
        live=live,
        organization_id=organization_id,
        organization_name=organization_name,
    )
    return SandboxServer(store, **server_kwargs).start()


def serve(
    host: str = "127.0.0.1",
    port: int = config.SANDBOX_PORT,
    calls: int = config.SANDBOX_CALLS,
    seed: int = config.SANDBOX_SEED,
    api_key: str = config.SANDBOX_API_KEY,
    latency_ms: float = 0.0,
    rps: float | None = None,
    fault_rate: float = 0.0,
    max_skip: int = config.CLOSE_MAX_SKIP,
    live: bool = True,
) -> None:
    """Serve until Ctrl-C (the `close-calls sandbox` command)."""
    t0 = time.perf_counter()
    store = SandboxStore(calls=calls, seed=seed, live=live)
    built = time.perf_counter() - t0
    server = SandboxServer(
        store,
        api_key=api_key,
        host=host,
        port=port,
        latency_ms=latency_ms,
        rps=rps,
        fault_rate=fault_rate,
        max_skip=max_skip,
        seed=seed,
    ).start()
    print(f"Close sandbox API at {server.base_url}", flush=True)
    print(f"API key: {api_key}", flush=True)
    growth = (
        f"the last {store.history_days} days, {calls} calls spread over them plus "
        f"{live_size(calls) - calls} short-lived ones, new calls, edits and deletes every hour; "
        "the same size whatever the date"
        if live
        else "the seeded history, clock frozen"
    )
    print(
        f"{len(store)} calls ({growth}), seed {seed}, clock {store.now.isoformat()}, built in "
        f"{built:.1f}s. Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # python -m close_calls_pipeline.sandbox.server [calls] [port]
    serve(
        calls=int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
        port=int(sys.argv[2]) if len(sys.argv) > 2 else config.SANDBOX_PORT,
    )
