"""The Close API client against the sandbox over real loopback HTTP (no mocking of requests)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from helpers.close_client import call_window, get_call

from close_calls_pipeline.core.close_api import (
    CALL_FIELDS,
    CloseApiError,
    CloseAuthError,
    CloseClient,
)

FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def make_client():
    clients: list[CloseClient] = []

    def _make(sb, api_key: str | None = None, **kw) -> CloseClient:
        kw.setdefault("backoff_base", 0.01)
        kw.setdefault("backoff_cap", 0.05)
        client = CloseClient(api_key or sb.api_key, sb.base_url, **kw)
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.close()


def record_methods(client: CloseClient) -> list[tuple[str, str]]:
    """(method, path) of every HTTP request the client sends (a response hook, not a mock)."""
    seen: list[tuple[str, str]] = []

    def hook(resp, *args, **kwargs):
        seen.append((resp.request.method, resp.request.path_url.split("?")[0]))

    client._transport._session.hooks["response"].append(hook)
    return seen


def projected(call: dict) -> dict:
    return {k: v for k, v in call.items() if k in CALL_FIELDS}


def decoded(pages) -> list[dict]:
    """The calls of pages of raw JSON text, decoded."""
    return [orjson.loads(c) for page in pages for c in page]


def all_ids(pages) -> list[str]:
    return [c["id"] for c in decoded(pages)]


def window_end(sb) -> datetime:
    return sb.store.now + timedelta(days=1)


# ---------------------------------------------------------------------------------- paging


def test_paging_returns_each_call_once_with_every_field_and_transcripts(make_sandbox, make_client):
    sb = make_sandbox(calls=300)
    client = make_client(sb)
    pages = list(call_window(client, FAR_PAST, window_end(sb)))
    assert all(0 < len(p) <= 100 for p in pages)
    assert all(isinstance(c, bytes) for p in pages for c in p)  # as received, parsed in bulk later
    calls = decoded(pages)
    ids = [c["id"] for c in calls]
    assert len(ids) == len(set(ids)) == 300
    truth = sb.store.truth()
    assert set(ids) == set(truth)
    for call in calls:
        assert call == projected(truth[call["id"]])
    with_tx = [c for c in calls if c.get("recording_transcript") or c.get("voicemail_transcript")]
    assert with_tx, "the seeded data has transcripts; they must be fetched"
    assert sum(
        1 for c in truth.values() if "recording_transcript" in c or "voicemail_transcript" in c
    ) == len(with_tx)
    assert sb.stats()["by_endpoint"] == {("activity.call.list", 200): 3}
    snap = client.counters.snapshot()
    assert snap["requests"] == 3 and snap["retries"] == 0 and snap["rate_limited"] == 0


def test_window_split_beats_skip_cap_when_known(make_sandbox, make_client):
    sb = make_sandbox(calls=1000, max_skip=200)
    client = make_client(sb, max_skip=200)
    ids = all_ids(call_window(client, FAR_PAST, window_end(sb)))
    assert Counter(ids).most_common(1)[0][1] == 1  # every id exactly once
    assert set(ids) == set(sb.store.truth())
    statuses = {s for (_, s) in sb.stats()["by_endpoint"]}
    assert statuses == {200}, "no 400 from the server: the split happens before the cap"


def test_window_split_learns_skip_cap_from_400(make_sandbox, make_client):
    sb = make_sandbox(calls=1000, max_skip=200)
    client = make_client(sb)  # believes max_skip=250_000
    ids = all_ids(call_window(client, FAR_PAST, window_end(sb)))  # no exception
    assert set(ids) == set(sb.store.truth())
    assert client.max_skip == 200
    assert sb.stats()["by_endpoint"][("activity.call.list", 400)] == 1
    assert len(ids) - len(set(ids)) <= 300  # only pages walked before the cap was learned repeat


def test_window_that_cannot_be_split_raises(make_sandbox, make_client):
    sb = make_sandbox(calls=10, max_skip=200)
    edge = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    sb.store.add_calls(450, at=edge)
    client = make_client(sb, max_skip=200)
    with pytest.raises(CloseApiError, match="too short to split"):
        list(
            call_window(
                client, edge - timedelta(microseconds=300), edge + timedelta(microseconds=300)
            )
        )


def test_window_boundaries_neither_lost_nor_duplicated(make_sandbox, make_client):
    sb = make_sandbox(calls=200)
    store = sb.store
    edges = [
        datetime(2024, 3, 1, tzinfo=UTC),  # whole second
        datetime(2024, 3, 1, 0, 0, 0, 123_000, tzinfo=UTC),  # milliseconds
        datetime(2024, 3, 1, 0, 0, 1, 999_999, tzinfo=UTC),  # microseconds
    ]
    on_edge = {e: set(store.add_calls(3, at=e)) for e in edges}
    client = make_client(sb)
    for e in edges:
        before = set(all_ids(call_window(client, e - timedelta(hours=1), e)))
        after = set(all_ids(call_window(client, e, e + timedelta(hours=1))))
        assert on_edge[e] <= after
        assert not on_edge[e] & before
    # adjacent windows cut exactly at the edges (and elsewhere) tile the whole history
    cuts = sorted({FAR_PAST, *edges, store.now - timedelta(days=30), window_end(sb)})
    ids = []
    for lo, hi in itertools.pairwise(cuts):
        ids += all_ids(call_window(client, lo, hi))
    assert len(ids) == len(set(ids)) == len(store.truth())


def test_has_calls_before(make_sandbox, make_client):
    sb = make_sandbox(calls=50)
    client = make_client(sb)
    earliest = min(datetime.fromisoformat(c["date_created"]) for c in sb.store.truth().values())
    sb.reset_stats()
    assert client.has_calls_before(earliest) is False
    assert client.has_calls_before(earliest + timedelta(microseconds=1)) is True
    assert sb.stats()["requests"] == 2


# ---------------------------------------------------------------------------------- rate limits


def test_429_waits_are_honoured_and_counted(sandbox, make_client):
    client = make_client(sandbox)
    sandbox.fail_next(2, "429")
    t0 = time.monotonic()
    page = next(call_window(client, FAR_PAST, window_end(sandbox)))
    elapsed = time.monotonic() - t0
    assert len(page) == 100
    snap = client.counters.snapshot()
    assert snap["rate_limited"] == 2
    assert snap["retries"] == 0  # 429s do not use the 5xx budget
    assert snap["seconds_waited"] == pytest.approx(0.5, abs=0.01)  # 2 x body rate_reset 0.25
    assert elapsed >= 0.49
    assert sandbox.stats()["by_endpoint"][("activity.call.list", 429)] == 2


def test_429_pause_applies_to_the_group_only(sandbox, make_client):
    client = make_client(sandbox)
    sandbox.fail_next(1, "429", group="activity")
    t0 = time.monotonic()
    get_call(client, sandbox.store.call_ids()[0])  # waits 0.25 s, pauses "activity"
    t1 = time.monotonic()
    client.me()  # group "other": not paused
    t2 = time.monotonic()
    assert t1 - t0 >= 0.24 and t2 - t1 < 0.2


def test_pacing_sustains_the_rate_limit_with_few_429s(make_sandbox, make_client):
    sb = make_sandbox(calls=300, rps=20, latency_ms=100)
    client = make_client(sb, pool_size=8)
    ids = sb.store.call_ids()
    stop = time.monotonic() + 4.0
    done = Counter()

    def worker(n: int) -> None:
        i = n
        while time.monotonic() < stop:
            assert get_call(client, ids[i % len(ids)]) is not None
            done[n] += 1
            i += 8

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    by = sb.stats()["by_endpoint"]
    ok, limited = by.get(("activity.call.list", 200), 0), by.get(("activity.call.list", 429), 0)
    assert ok == sum(done.values())
    rate = ok / elapsed
    # Lenient on purpose (a shared machine can starve the threads): this catches pacing that
    # throttles itself; `close-calls bench` measures how close to the limit it really gets.
    assert rate >= 10, f"{rate:.1f} requests/s"
    assert limited <= 0.01 * (ok + limited), f"{limited} of {ok + limited} answered 429"
    assert client.counters.snapshot()["rate_limited"] == limited


# ---------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["500", "502", "503", "cut", "garbage"])
def test_faults_are_retried_then_succeed(sandbox, make_client, kind):
    client = make_client(sandbox)
    sandbox.fail_next(3, kind)
    pages = list(call_window(client, FAR_PAST, window_end(sandbox)))
    ids = all_ids(pages)
    assert len(ids) == len(set(ids)) == len(sandbox.store.truth())
    snap = client.counters.snapshot()
    assert snap["retries"] == 3 and snap["requests"] == 3 + 3
    assert snap["seconds_waited"] > 0


@pytest.mark.parametrize(
    "kind,described",
    [("503", "HTTP 503"), ("cut", "ChunkedEncodingError"), ("garbage", "not valid JSON")],
)
def test_persistent_faults_fail_clearly(sandbox, make_client, kind, described):
    client = make_client(sandbox, max_attempts=4)
    sandbox.fail_next(1000, kind)
    with pytest.raises(CloseApiError) as info:
        client.has_calls_before(sandbox.store.now)  # GET /activity/call/?date_created__lt=...
    msg = str(info.value)
    assert "/activity/call/" in msg and "4 attempts" in msg and described in msg
    assert "?" not in msg and "date_created" not in msg  # the path, not the query string
    assert info.value.attempts == 4 and info.value.endpoint == "/activity/call/"
    assert sandbox.stats()["requests"] == 4


def test_connection_refused_is_retried_then_fails_saying_to_check_the_url(make_client, caplog):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now

    class Dead:
        api_key = "sk_test_refused-0123456789"
        base_url = f"http://127.0.0.1:{port}/api/v1"

    caplog.set_level(logging.DEBUG)
    client = make_client(Dead, max_attempts=4)
    for _ in range(2):
        with pytest.raises(CloseApiError, match=r"GET /me/ failed after 4 attempts") as info:
            client.me()
    assert client.counters.snapshot()["retries"] == 6
    msg = str(info.value)
    assert "\n" not in msg and "ConnectionError" in msg
    assert f"127.0.0.1:{port}" in msg and "CLOSE_API_BASE_URL" in msg and "network" in msg
    assert Dead.api_key not in msg and Dead.api_key not in caplog.text
    # One warning for the endpoint, however many attempts and requests failed.
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 6
    assert [r.levelno for r in retries].count(logging.WARNING) == 1


def test_a_server_that_answers_5xx_gets_no_url_hint(sandbox, make_client):
    client = make_client(sandbox, max_attempts=2)
    sandbox.fail_next(2, "503")
    with pytest.raises(CloseApiError, match="HTTP 503") as info:
        client.me()
    assert "CLOSE_API_BASE_URL" not in str(info.value)


# ---------------------------------------------------------------------------------- auth


def test_bad_key_fails_fast_without_leaking_it(sandbox, make_client, caplog, capsys):
    secret = "sk_live_SuperSecret-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    client = make_client(sandbox, api_key=secret)
    with pytest.raises(CloseAuthError) as info:
        list(call_window(client, FAR_PAST, window_end(sandbox)))
    msg = str(info.value)
    assert "401" in msg and "CLOSE_API_KEY" in msg and "API Keys" in msg
    assert "CLOSE_API_BASE_URL" in msg
    assert sandbox.stats()["requests"] == 1  # no retry
    assert isinstance(info.value, CloseApiError)
    with pytest.raises(CloseAuthError):
        client.me()
    out, err = capsys.readouterr()
    import base64

    b64 = base64.b64encode(f"{secret}:".encode()).decode()
    for text in (
        msg,
        repr(info.value),
        repr(client),
        str(client),
        caplog.text,
        out,
        err,
        repr(client.counters),
        repr(client._transport._session.auth),
    ):
        assert secret not in text and b64 not in text


def test_bearer_token_auth(sandbox):
    with CloseClient(None, sandbox.base_url, access_token=sandbox.api_key) as client:
        assert client.me()["id"] == sandbox.store.users[0]["id"]
        assert "test-key" not in repr(client)
    with pytest.raises(ValueError):
        CloseClient(None, sandbox.base_url)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.close.com/api/v1",
        "http://10.0.0.5:8080/api/v1",
        "http://127.0.0.1.nip.io/api/v1",
        "ftp://127.0.0.1/api/v1",
    ],
)
def test_plain_http_to_non_loopback_is_refused(url):
    with pytest.raises(ValueError, match="CLOSE_API_BASE_URL|http"):
        CloseClient("k", url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.close.com/api/v1",
        "http://127.0.0.1:9/api/v1",
        "http://127.8.9.10/api/v1",
        "http://localhost:9/api/v1",
        "http://[::1]:9/api/v1",
    ],
)
def test_https_and_loopback_http_are_accepted(url):
    CloseClient("k", url).close()


# ---------------------------------------------------------------------------------- events


def test_event_paging_and_action_filter(make_sandbox, make_client):
    sb = make_sandbox(calls=300)
    store = sb.store
    ids = store.call_ids()
    store.update_call(ids[0], note="before the window")
    store.advance(120)
    since = store.now
    updated = ids[10:130]  # 120 updates: 3 pages of <= 50
    for i, cid in enumerate(updated):
        store.update_call(cid, note=f"note {i} ✓")
        store.advance(0.5)
    deleted = ids[200:205]
    for cid in deleted:
        store.delete_call(cid)
    created = set(store.add_calls(4))
    store.advance(5)
    client = make_client(sb)
    seen = record_methods(client)
    sb.reset_stats()

    events = list(client.iter_events("updated", since))
    assert len(events) == len({e["id"] for e in events}) == len(updated)
    assert {e["object_id"] for e in events} == set(updated)
    assert all(e["action"] == "updated" and e["object_type"] == "activity.call" for e in events)
    stamps = [e["date_updated"] for e in events]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert sb.stats()["by_endpoint"] == {("event.list", 200): 3}
    assert all(p == "/api/v1/event/" for _, p in seen)

    deletes = list(client.iter_events("deleted", since))
    assert {e["object_id"] for e in deletes} == set(deleted)
    assert all(e["data"] is None for e in deletes)
    assert {e["object_id"] for e in client.iter_events("created", since)} == created
    # since is inclusive and later edits only
    later = list(client.iter_events("updated", since + timedelta(seconds=30)))
    assert len(later) == len(updated) - 60


# ---------------------------------------------------------------------------------- by id


def test_calls_by_ids_use_params_body_and_skip_deleted(make_sandbox, make_client):
    sb = make_sandbox(calls=400)
    store = sb.store
    ids = store.call_ids()[:250]
    gone = ids[5:8]
    for cid in gone:
        store.delete_call(cid)
    client = make_client(sb)
    seen = record_methods(client)
    wanted = ids + ["acti_doesnotexist"]
    pages = list(client.iter_calls_by_ids(iter(wanted)))
    got = decoded(pages)
    assert sorted(c["id"] for c in got) == sorted(set(ids) - set(gone))
    truth = store.truth()
    assert all(c == projected(truth[c["id"]]) for c in got)
    assert seen == [("POST", "/api/v1/activity/call/")] * 3  # 251 ids -> 3 requests
    assert list(client.iter_calls_by_ids([])) == []


def test_one_call_by_id_with_transcripts_and_a_missing_one(make_sandbox, make_client):
    sb = make_sandbox(calls=300)
    truth = sb.store.truth()
    with_tx = next(c for c in truth.values() if "recording_transcript" in c)
    client = make_client(sb)
    assert get_call(client, with_tx["id"]) == projected(with_tx)
    assert get_call(client, "acti_missing") is None


def test_extra_call_fields(make_sandbox, make_client):
    sb = make_sandbox(calls=300)
    truth = sb.store.truth()
    odd = next(c for c in truth.values() if "custom.cf_lead_temperature" in c)
    client = make_client(sb, extra_call_fields=("custom.cf_lead_temperature",))
    assert (
        get_call(client, odd["id"])["custom.cf_lead_temperature"]
        == odd["custom.cf_lead_temperature"]
    )


# ---------------------------------------------------------------------------------- reference


def test_reference_data_and_server_clock(sandbox, make_client):
    client = make_client(sandbox)
    assert client.server_now() is None
    assert client.list_outcomes() == sandbox.store.outcomes
    assert client.list_users() == sandbox.store.users
    me = client.me()
    assert me["id"] == sandbox.store.users[0]["id"]
    assert client.server_now() == sandbox.store.now.replace(microsecond=0)
    sandbox.store.advance(3600.7)
    client.me()
    now = client.server_now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs((now - sandbox.store.now).total_seconds()) < 1


def test_reference_lists_page_through_skip(make_sandbox, make_client):
    sb = make_sandbox(calls=20)
    store = sb.store
    base = store.users[0]
    store.users.extend(
        {**base, "id": f"user_extra{i:03d}", "email": f"u{i}@x.test"} for i in range(230)
    )
    client = make_client(sb)
    sb.reset_stats()
    assert client.list_users() == store.users
    assert sb.stats()["by_endpoint"] == {("user.list", 200): 3}


# ---------------------------------------------------------------------------------- robustness


def test_other_4xx_fail_at_once_with_the_server_message(sandbox, make_client):
    client = make_client(sandbox)
    with pytest.raises(CloseApiError, match="Invalid action: merged") as info:
        list(client.iter_events("merged", sandbox.store.now))
    assert info.value.status == 400 and not isinstance(info.value, CloseAuthError)
    assert sandbox.stats()["requests"] == 1


def test_read_timeout_is_retried_then_fails(make_sandbox, make_client):
    sb = make_sandbox(calls=20, latency_ms=400)
    client = make_client(sb, read_timeout=0.1, max_attempts=2)
    with pytest.raises(CloseApiError, match=r"/me/ failed after 2 attempts.*ReadTimeout"):
        client.me()
    sb.latency_ms = 0
    assert client.me()["id"]


def test_concurrent_windows_under_random_faults(make_sandbox, make_client):
    """8 threads share one client over a server failing 15% of requests (5xx, cut bodies)."""
    from concurrent.futures import ThreadPoolExecutor

    sb = make_sandbox(calls=1500, fault_rate=0.15, seed=3)
    client = make_client(sb, pool_size=8, max_attempts=8)
    end = window_end(sb)
    cuts = [end - timedelta(days=200) + timedelta(days=10 * i) for i in range(21)] + [end]
    cuts[0] = FAR_PAST

    def walk(bounds):
        return all_ids(call_window(client, *bounds))

    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(walk, itertools.pairwise(cuts)) for i in chunk]
    assert len(ids) == len(set(ids)) == len(sb.store.truth())
    snap = client.counters.snapshot()
    assert snap["retries"] > 0 and snap["requests"] == sb.stats()["requests"]


def test_key_whitespace_is_stripped_and_control_characters_refused(sandbox):
    with CloseClient(f"  {sandbox.api_key}\n", sandbox.base_url) as client:
        assert client.me()["id"]
    with pytest.raises(ValueError, match="control characters") as info:
        CloseClient("abc\x00def", sandbox.base_url)
    assert "abc" not in str(info.value)
