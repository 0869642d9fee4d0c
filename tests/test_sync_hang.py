"""A server that accepts connections, reads the request and never answers, or answers one byte at
a time: a sync fails within the client's per-request deadline, with a message that names the
endpoint."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseApiError, CloseClient
from close_calls_pipeline.core.sync import sync_calls

API_KEY = "sk_test_never-in-a-message"


@pytest.fixture
def silent_server():
    """A loopback server that accepts and reads, and never writes a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop, held = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.2)
            held.append(conn)
            try:
                conn.recv(65536)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(params=["headers", "body"])
def trickling_server(request):
    """A loopback server that answers every request one byte every 0.2 s: from the status line
    on ("headers"), or after whole headers that announce a long body ("body")."""
    body = b'{"id": "user_1", "padding": "' + b"x" * 10_000 + b'"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if request.param == "body":
                    conn.sendall(head)
                    data = body
                else:
                    data = head + body
                for i in range(len(data)):
                    if stop.wait(0.2):
                        return
                    conn.sendall(data[i : i + 1])
            except OSError:  # the client cut the connection
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1"
    stop.set()
    thread.join(2)
    listener.close()


def run_against(base_url: str, tmp_path, **client_kwargs) -> tuple[CloseApiError, float]:
    con = warehouse.connect(str(tmp_path / "warehouse.duckdb"))
    started = time.monotonic()
    try:
        with (
            CloseClient(API_KEY, base_url, **client_kwargs) as client,
            pytest.raises(CloseApiError) as failure,
        ):
            sync_calls(client, con)
    finally:
        con.close()
    return failure.value, time.monotonic() - started


@pytest.mark.slow  # a real run or server in a subprocess
def test_a_sync_against_a_silent_server_fails_within_the_default_deadline(silent_server, tmp_path):
    error, seconds = run_against(silent_server, tmp_path)
    # defaults: 15 s read timeout, 40 s per request across its attempts
    assert 30 <= seconds < 42, seconds
    message = str(error)
    assert "GET /me/" in message and silent_server + "/me/" in message
    assert "40 s request deadline" in message and "ReadTimeout" in message
    assert error.attempts == 3


def test_the_deadline_bounds_a_request_whatever_the_timeouts(silent_server, tmp_path):
    error, seconds = run_against(
        silent_server, tmp_path, read_timeout=1.0, request_deadline=3.5, backoff_base=0.01
    )
    assert 3.4 <= seconds < 4.5, seconds
    assert error.endpoint == "/me/" and error.attempts == 4  # 1 + 1 + 1 + the last 0.5 s


def test_a_server_that_trickles_bytes_is_cut_at_the_deadline(trickling_server, tmp_path):
    # Each byte comes well inside the read timeout, so only the deadline can end the request.
    deadline = 2.0
    error, seconds = run_against(
        trickling_server, tmp_path, read_timeout=1.0, request_deadline=deadline, max_attempts=3
    )
    assert seconds < deadline + 2.0, seconds  # the deadline, a cut's grace, and some slack
    assert error.endpoint == "/me/" and "GET /me/" in str(error)
    assert f"{deadline:g} s request deadline" in str(error)
    assert API_KEY not in str(error)
