"""A watchdog that bounds an HTTP attempt's whole duration: connect, headers and body.

Socket timeouts bound each read, not a response: a server that sends one byte every few seconds
resets them forever. So each attempt is registered with a deadline, the connection pool tells the
watchdog which connection the attempt holds (`WatchedAdapter`), and past the deadline the
watchdog shuts that connection's socket down. The blocked read then ends at once with an error
(or an early end of the body), and the attempt is failed as past its deadline.

A connection is bound to an attempt from the moment the pool hands it out until it is put back,
so the watchdog never cuts a connection that another attempt holds by then.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # .attempt: the attempt this thread is making, if any
# A connection whose socket does not exist yet (it is connecting: the connect timeout bounds
# that) is looked at again after this many seconds.
_RECHECK_SECONDS = 0.05


class Attempt:
    """One HTTP attempt under a deadline (`time.monotonic()` seconds)."""

    __slots__ = ("connection", "cut", "deadline", "watchdog")

    def __init__(self, watchdog: Watchdog, deadline: float) -> None:
        self.watchdog = watchdog
        self.deadline = deadline
        self.connection: Any = None  # the urllib3 connection it holds
        self.cut = False  # the watchdog shut its connection down


class Watchdog:
    """One thread per client that cuts the connections of attempts past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._attempts: set[Attempt] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_at: float | None = None  # when the thread wakes next (None: when notified)

    @contextmanager
    def watch(self, seconds: float) -> Iterator[Attempt]:
        """Run the block (one HTTP attempt, in this thread) under a deadline of `seconds`."""
        attempt = Attempt(self, time.monotonic() + seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="close-api-watchdog", daemon=True
                )
                self._thread.start()
            self._attempts.add(attempt)
            if self._wake_at is None or attempt.deadline < self._wake_at:
                self._cond.notify()  # else the thread wakes before this deadline anyway
        _current.attempt = attempt
        try:
            yield attempt
        finally:
            _current.attempt = None
            with self._cond:
                self._attempts.discard(attempt)
                attempt.connection = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                wake: float | None = None
                for attempt in self._attempts:
                    if attempt.cut:
                        continue
                    if attempt.deadline > now:
                        due = attempt.deadline
                    elif _shut_down(attempt.connection):
                        attempt.cut = True
                        continue
                    else:
                        due = now + _RECHECK_SECONDS
                    wake = due if wake is None else min(wake, due)
                self._wake_at = wake
                self._cond.wait(None if wake is None else max(0.0, wake - now))

    # Called by the pools (`_WatchedPool`), in the thread making the attempt.
    @staticmethod
    def bind(connection: Any) -> None:
        attempt = getattr(_current, "attempt", None)
        if attempt is not None:
            with attempt.watchdog._cond:
                attempt.connection = connection

    @staticmethod
    def unbind(connection: Any) -> None:
        attempt = getattr(_current, "attempt", None)
        if attempt is not None and attempt.connection is connection:
            with attempt.watchdog._cond:
                attempt.connection = None


def _shut_down(connection: Any) -> bool:
    """Shut the connection's socket down (not close: the attempt's thread is still using the
    descriptor); False when it has no socket yet."""
    sock = getattr(connection, "sock", None)
    if sock is None:
        return False
    try:
        # socket.socket's own shutdown, also for an SSLSocket: its override would drop the TLS
        # state under the reading thread's feet instead of letting its read fail.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
    return True


class _WatchedPool:
    """Tells the watchdog which connection the current attempt holds."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        Watchdog.bind(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        Watchdog.unbind(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    pass


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools (direct or through an HTTP proxy) report to the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are their own classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
