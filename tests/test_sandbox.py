"""The sandbox Close API honours the contract in docs/close-api.md, over real loopback HTTP."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise

import orjson
import pytest
import requests

from close_calls_pipeline.core.call_fields import TRANSCRIPT_FIELDS
from close_calls_pipeline.sandbox import SandboxStore
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS, RETENTION_US, US_PER_DAY, live_size
from close_calls_pipeline.sandbox.data import CALL_FIELDS, EXTRA_FIELDS

KEY = "test-key"
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ALL_FIELDS = ",".join(CALL_FIELDS + EXTRA_FIELDS + TRANSCRIPT_FIELDS)


def _session(key: str = KEY) -> requests.Session:
    s = requests.Session()
    s.auth = (key, "")
    return s


def get(server, path, session=None, **params):
    s = session or _session(server.api_key)
    return s.get(server.base_url + path, params=params, timeout=10)


def pull_all(server, **params) -> list[dict]:
    s = _session(server.api_key)
    out, skip = [], 0
    while True:
        r = get(server, "/activity/call/", s, _skip=skip, _limit=100, **params)
        assert r.status_code == 200, r.text
        doc = r.json()
        out += doc["data"]
        skip += 100
        if not doc["has_more"]:
            return out


def all_events(server, **params) -> list[dict]:
    s = _session(server.api_key)
    out, cursor = [], None
    while True:
        p = dict(params)
        if cursor:
            p["_cursor"] = cursor
        r = get(server, "/event/", s, **p)
        assert r.status_code == 200, r.text
        doc = r.json()
        out += doc["data"]
        cursor = doc["cursor_next"]
        if not cursor:
            return out


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


# ------------------------------------------------------------------------------------ auth


def test_auth_basic_bearer_and_401(sandbox):
    url = sandbox.base_url + "/activity/call/"
    assert requests.get(url, auth=(KEY, ""), timeout=5).status_code == 200
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5).status_code == 200
    )
    for kwargs in (
        {},
        {"auth": ("wrong-key", "")},
        {"headers": {"Authorization": "Bearer wrong-key"}},
        {"headers": {"Authorization": "Basic !!notbase64"}},
    ):
        r = requests.get(url, timeout=5, **kwargs)
        assert r.status_code == 401
        assert r.json() == {"error": "Unauthorized"}
        assert "wrong-key" not in r.text and KEY not in r.text
    for path in ("/outcome/", "/user/", "/me/", "/event/", "/activity/call/x/"):
        assert requests.get(sandbox.base_url + path, timeout=5).status_code == 401


def test_headers_content_type_length_and_virtual_date(sandbox):
    r = get(sandbox, "/me/")
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert parsedate_to_datetime(r.headers["Date"]) == sandbox.store.now.replace(microsecond=0)
    sandbox.store.advance(86_400 * 3)
    r = get(sandbox, "/me/")
    assert parsedate_to_datetime(r.headers["Date"]) == sandbox.store.now.replace(microsecond=0)
    assert "RateLimit" not in r.headers  # no limit configured


# ------------------------------------------------------------------------------------ listing


def test_limit_max_and_default(sandbox):
    assert len(get(sandbox, "/activity/call/").json()["data"]) == 100
    assert len(get(sandbox, "/activity/call/", _limit=100).json()["data"]) == 100
    r = get(sandbox, "/activity/call/", _limit=101)
    assert r.status_code == 400 and "error" in r.json()
    assert get(sandbox, "/activity/call/", _limit="x").status_code == 400


def test_max_skip(make_sandbox):
    server = make_sandbox(calls=300, max_skip=200)
    assert get(server, "/activity/call/", _skip=200).status_code == 200
    r = get(server, "/activity/call/", _skip=201)
    assert r.status_code == 400
    assert r.json() == {
        "error": "The skip you set is larger than the maximum skip for this "
        "resource (max_skip = 200). Please refine your search query."
    }


def test_paging_returns_each_call_once_in_order(sandbox):
    store = sandbox.store
    # ties on date_created: several calls created at the same instant
    store.add_calls(7, at=store.now - timedelta(days=3))
    calls = pull_all(sandbox)
    ids = [c["id"] for c in calls]
    assert len(ids) == len(set(ids)) == 307
    assert set(ids) == set(store.truth())
    keys = [(ts(c["date_created"]), c["id"]) for c in calls]
    assert keys == sorted(keys, reverse=True)
    # has_more is exact
    r = get(sandbox, "/activity/call/", _skip=207, _limit=100).json()
    assert len(r["data"]) == 100 and r["has_more"] is False


def test_date_created_filters_edges_and_forms(sandbox):
    truth = sandbox.store.truth()
    c = sorted(truth.values(), key=lambda x: x["date_created"])[150]
    edge = c["date_created"]

    def ids(**p):
        return {x["id"] for x in pull_all(sandbox, **p)}

    gte, gt = ids(date_created__gte=edge), ids(date_created__gt=edge)
    lt, lte = ids(date_created__lt=edge), ids(date_created__lte=edge)
    assert c["id"] in gte and c["id"] not in gt and c["id"] in lte and c["id"] not in lt
    assert gte | lt == set(truth) and not gte & lt  # half-open windows partition
    assert gt | lte == set(truth) and not gt & lte
    expect = {k for k, v in truth.items() if ts(v["date_created"]) >= ts(edge)}
    assert gte == expect
    # the same instant written naive (= UTC), with another offset, and with Z
    t = ts(edge)
    assert ids(date_created__gte=t.replace(tzinfo=None).isoformat()) == gte
    assert (
        ids(
            date_created__gte=t.astimezone(
                __import__("datetime").timezone(timedelta(hours=-5))
            ).isoformat()
        )
        == gte
    )
    assert ids(date_created__gte=t.isoformat().replace("+00:00", "Z")) == gte
    # plain dates are midnight UTC
    day = t.date().isoformat()
    midnight = datetime.fromisoformat(day).replace(tzinfo=UTC)
    assert ids(
        date_created__gte=day, date_created__lt=(t.date() + timedelta(days=1)).isoformat()
    ) == {
        k
        for k, v in truth.items()
        if midnight <= ts(v["date_created"]) < midnight + timedelta(days=1)
    }
    r = get(sandbox, "/activity/call/", date_created__gte="not-a-date")
    assert r.status_code == 400 and "date_created__gte" in r.json()["error"]


def test_activity_at_and_id_filters(sandbox):
    truth = sandbox.store.truth()
    assert any(v["activity_at"] is None for v in truth.values())
    mid = sorted(v["activity_at"] for v in truth.values() if v["activity_at"])[100]
    got = {x["id"] for x in pull_all(sandbox, activity_at__lt=mid)}
    assert got == {
        k for k, v in truth.items() if v["activity_at"] and ts(v["activity_at"]) < ts(mid)
    }
    some = next(iter(truth.values()))
    for name in ("lead_id", "user_id", "contact_id"):
        got = pull_all(sandbox, **{name: some[name]})
        assert got and {x["id"] for x in got} == {
            k for k, v in truth.items() if v[name] == some[name]
        }
    two_users = [u["id"] for u in sandbox.store.users[:2]]
    got = {x["id"] for x in pull_all(sandbox, user_id=",".join(two_users))}
    assert got == {k for k, v in truth.items() if v["user_id"] in two_users}


def test_unknown_params_are_ignored(sandbox):
    base = get(sandbox, "/activity/call/", _limit=50).json()
    far = (sandbox.store.now + timedelta(days=365)).isoformat()
    other = get(
        sandbox, "/activity/call/", _limit=50, date_updated__gt=far, _order_by="id", whatever="1"
    ).json()
    assert other == base


def test_fields_restriction_and_transcripts_only_when_named(sandbox):
    truth = sandbox.store.truth()
    with_rec = {k for k, v in truth.items() if v.get("recording_transcript") is not None}
    with_vm = {k for k, v in truth.items() if v.get("voicemail_transcript") is not None}
    assert with_rec and with_vm
    plain = pull_all(sandbox)
    assert all(not set(TRANSCRIPT_FIELDS) & c.keys() for c in plain)
    few = pull_all(sandbox, _fields="id,duration,cost")
    assert all(set(c) == {"id", "duration", "cost"} for c in few)
    rec_only = {c["id"]: c for c in pull_all(sandbox, _fields="id,recording_transcript")}
    assert {k for k, c in rec_only.items() if "recording_transcript" in c} == with_rec
    assert all("voicemail_transcript" not in c for c in rec_only.values())
    full = {c["id"]: c for c in pull_all(sandbox, _fields=ALL_FIELDS)}
    assert full == truth
    tx = truth[next(iter(with_rec))]["recording_transcript"]
    assert set(tx) == {"utterances", "summary_text", "summary_html"}


def test_params_body_form_with_id_in(sandbox):
    ids = sorted(sandbox.store.truth())[:40]
    s = _session()
    r = s.post(
        sandbox.base_url + "/activity/call/",
        headers={"x-http-method-override": "GET"},
        data=orjson.dumps({"_params": {"id__in": ids, "_fields": ["id", "note"], "_limit": 100}}),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    got = r.json()["data"]
    assert {c["id"] for c in got} == set(ids) and all(set(c) == {"id", "note"} for c in got)
    r = s.post(
        sandbox.base_url + "/activity/call/",
        headers={"x-http-method-override": "GET"},
        data=orjson.dumps({"_params": {"id__in": ",".join(ids[:3])}}),
        timeout=5,
    )
    assert {c["id"] for c in r.json()["data"]} == set(ids[:3])
    assert s.post(sandbox.base_url + "/activity/call/", json={}, timeout=5).status_code == 405
    assert (
        s.post(
            sandbox.base_url + "/activity/call/",
            data=b"{nope",
            headers={"x-http-method-override": "GET"},
            timeout=5,
        ).status_code
        == 400
    )


def test_single_get_and_404(sandbox):
    truth = sandbox.store.truth()
    cid = next(iter(truth))
    r = get(sandbox, f"/activity/call/{cid}/")
    assert r.status_code == 200 and r.json()["id"] == cid
    assert "recording_transcript" not in r.json()
    r = get(sandbox, f"/activity/call/{cid}/", _fields="id,user_id")
    assert r.json() == {"id": cid, "user_id": truth[cid]["user_id"]}
    assert get(sandbox, "/activity/call/acti_nope/").status_code == 404
    sandbox.store.delete_call(cid)
    assert get(sandbox, f"/activity/call/{cid}/").status_code == 404


def test_reference_endpoints(sandbox):
    outcomes = get(sandbox, "/outcome/").json()
    assert outcomes["has_more"] is False
    types = {o["type"] for o in outcomes["data"]}
    assert types == {"custom", "vm-dropped"}
    known = {o["id"] for o in outcomes["data"]}
    store = SandboxStore(calls=3000, seed=5, start=START)
    referenced = {c["outcome_id"] for c in store.truth().values() if c["outcome_id"]}
    assert 1 <= len(referenced - {o["id"] for o in store.outcomes}) <= 2
    users = get(sandbox, "/user/").json()["data"]
    assert len(users) >= 5 and {"id", "email", "first_name", "last_name"} <= set(users[0])
    page = get(sandbox, "/user/", _skip=2, _limit=3).json()
    assert [u["id"] for u in page["data"]] == [u["id"] for u in users[2:5]] and page["has_more"]
    assert get(sandbox, "/me/").json()["id"] in {u["id"] for u in users}
    assert known


# ------------------------------------------------------------------------------------ events


def test_events_filters_combos_and_errors(sandbox):
    store = sandbox.store
    store.advance(60)
    store.mutate_random(random.Random(1), new=5, updated=5, deleted=2)
    evs = all_events(sandbox)
    assert len(evs) >= 10  # 5 created + 2 deleted + updates (repeats consolidate)
    e = evs[0]
    assert set(e) >= {
        "id",
        "date_created",
        "date_updated",
        "object_type",
        "object_id",
        "lead_id",
        "user_id",
        "organization_id",
        "action",
        "changed_fields",
        "data",
        "previous_data",
        "meta",
    }
    assert e["id"].startswith("ev_") and e["object_type"] == "activity.call"
    assert datetime.fromisoformat(e["date_updated"]).tzinfo is None  # no offset
    assert len(e["date_updated"].split(".")[1]) == 6
    for bad in (
        {"object_type": "activity.call"},
        {"action": "created"},
        {"object_id": "x", "lead_id": "y"},
        {"_skip": 0},
        {"_cursor": "garbage!!"},
        {"object_type": "activity.call", "action": "created", "object_id": "x"},
        {"date_updated__gt": "bogus"},
    ):
        r = get(sandbox, "/event/", **bad)
        assert r.status_code == 400, bad
        assert r.json()["error"]
    created = all_events(sandbox, object_type="activity.call", action="created")
    assert created and all(x["action"] == "created" for x in created)
    one = created[0]
    by_object = all_events(sandbox, object_id=one["object_id"])
    assert one["id"] in {x["id"] for x in by_object}
    assert all(x["object_id"] == one["object_id"] for x in by_object)
    assert all_events(sandbox, object_type="activity.call", object_id=one["object_id"])
    for name in ("lead_id", "user_id"):
        got = all_events(sandbox, **{name: one[name]})
        assert one["id"] in {x["id"] for x in got} and all(x[name] == one[name] for x in got)
        assert all_events(
            sandbox, **{name: one[name], "object_type": "activity.call", "action": "created"}
        )
    deleted = all_events(sandbox, object_type="activity.call", action="deleted")
    assert len(deleted) == 2
    for d in deleted:
        assert d["data"] is None and d["previous_data"]["id"] == d["object_id"]
        assert d["object_id"] in store.deleted_ids and d["object_id"] not in store.truth()
    assert {c["id"] for c in pull_all(sandbox)}.isdisjoint(store.deleted_ids)


def test_event_cursor_paging_limit_cap_and_order(sandbox):
    store = sandbox.store
    for i in range(6):
        store.advance(61)
        store.mutate_random(random.Random(i), new=15, updated=3, deleted=1)
    total = len(store.all_events())
    assert total > 100
    r = get(sandbox, "/event/", _limit=500).json()
    assert len(r["data"]) == 50 and r["cursor_next"] and r["cursor_previous"] is None
    evs = all_events(sandbox, _limit=37)
    assert len(evs) == len({e["id"] for e in evs}) == total
    keys = [(e["date_updated"], e["id"]) for e in evs]
    assert keys == sorted(keys, reverse=True)
    # the cursor is stable while new events arrive at the top
    first = get(sandbox, "/event/", _limit=20).json()
    store.advance(61)
    store.add_calls(3)
    rest = all_events(sandbox, _cursor=first["cursor_next"])
    assert [e["id"] for e in first["data"] + rest] == [e["id"] for e in evs[:]]
    # date_updated filters
    mid = evs[len(evs) // 2]["date_updated"]
    got = all_events(sandbox, date_updated__gte=mid)
    assert {e["id"] for e in got} == {e["id"] for e in evs if e["date_updated"] >= mid} | {
        e["id"]
        for e in store.all_events()
        if e["action"] == "created" and e["date_updated"] > evs[0]["date_updated"]
    }
    assert all(e["date_updated"] < mid for e in all_events(sandbox, date_updated__lt=mid))


def test_event_retention_30_days(sandbox):
    store = sandbox.store
    cid = store.add_calls(1)[0]
    assert [e["object_id"] for e in all_events(sandbox)] == [cid]
    store.advance(30 * 86_400 - 1)
    assert len(all_events(sandbox)) == 1
    store.advance(2)
    assert all_events(sandbox) == []
    assert get(sandbox, f"/activity/call/{cid}/").status_code == 200


def test_event_consolidation(sandbox):
    store = sandbox.store
    cid = next(iter(store.truth()))
    store.update_call(cid, note="first")
    first = all_events(sandbox, object_id=cid)
    assert len(first) == 1 and first[0]["action"] == "updated"
    store.advance(30)
    store.update_call(cid, outcome_id=None)
    second = all_events(sandbox, object_id=cid)
    assert len(second) == 1 and second[0]["id"] == first[0]["id"]
    assert second[0]["date_updated"] > first[0]["date_updated"]
    assert {"note", "outcome_id", "date_updated"} <= set(second[0]["changed_fields"])
    assert second[0]["data"]["outcome_id"] is None and second[0]["data"]["note"] == "first"
    store.advance(61)
    store.update_call(cid, note="second")
    third = all_events(sandbox, object_id=cid)
    assert len(third) == 2 and third[1]["id"] == first[0]["id"]
    assert third[0]["previous_data"]["note"] == "first"


# ------------------------------------------------------------------------------------ mutations


def test_mutations_transcripts_and_deletes(sandbox):
    store = sandbox.store
    cid = next(iter(store.truth()))
    tx = {
        "utterances": [
            {
                "speaker_label": "A",
                "speaker_side": "contact",
                "start": 0.0,
                "end": 1.5,
                "text": "héllo 👋",
            }
        ],
        "summary_text": "s",
        "summary_html": "<p>s</p>",
    }
    store.advance(5)
    store.update_call(cid, recording_transcript=tx)
    got = get(
        sandbox, f"/activity/call/{cid}/", _fields="id,date_updated,recording_transcript"
    ).json()
    assert got["recording_transcript"] == tx
    assert ts(got["date_updated"]) == store.now
    store.update_call(cid, recording_transcript=None)
    got = get(sandbox, f"/activity/call/{cid}/", _fields="id,recording_transcript").json()
    assert "recording_transcript" not in got
    before = store.now
    res = store.mutate_random(random.Random(9), new=3, updated=20, deleted=4, old_share=0.5)
    assert len(res["created"]) == 3 and len(res["updated"]) == 20 and len(res["deleted"]) == 4
    truth = store.truth()
    assert all(c in truth for c in set(res["created"]) - set(res["deleted"]))
    assert not set(res["deleted"]) & truth.keys()
    old = [
        c
        for c in res["updated"]
        if c in truth and before - ts(truth[c]["date_created"]) > timedelta(days=60)
    ]
    assert old  # updates reach calls months old
    assert {c["id"] for c in pull_all(sandbox)} == set(truth)


def test_put_raw_call_malformed_is_served(sandbox):
    store = sandbox.store
    store.put_raw_call(
        {
            "id": "acti_raw1",
            "_type": "Call",
            "cost": "n/a",
            "date_created": "yesterday",
            "duration": "12",
            "recording_transcript": "not-an-object",
        },
        at=store.now - timedelta(hours=1),
    )
    store.put_raw_call({"_type": "Call", "note": None}, at=store.now - timedelta(hours=2))
    calls = pull_all(sandbox, _fields=ALL_FIELDS)
    raw = {c.get("id"): c for c in calls if c.get("cost") == "n/a" or "id" not in c}
    assert raw["acti_raw1"]["recording_transcript"] == "not-an-object"
    assert None in raw  # the record without an id
    r = get(sandbox, "/activity/call/acti_raw1/")
    assert r.status_code == 200 and r.json()["date_created"] == "yesterday"
    assert "recording_transcript" not in r.json()


# ------------------------------------------------------------------------------------ knobs


def test_rate_limit_429(make_sandbox):
    server = make_sandbox(rps=3)
    s = _session()
    # start at the beginning of a fresh 1-second window
    time.sleep(1 - (time.monotonic() % 1) + 0.01)
    statuses = [get(server, "/activity/call/", s, _limit=1) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert statuses[0].headers["RateLimit"].startswith("limit=3, remaining=2, reset=")
    r = statuses[3]
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.headers["RateLimit"].startswith("limit=3, remaining=0, reset=")
    body = r.json()["error"]
    assert body["message"] == "API call count exceeded for this period"
    assert body["rate_limit"] == 3 and body["rate_window"] == 1 and 0 < body["rate_reset"] <= 1
    assert get(server, "/event/", s).status_code == 200  # another group has its own budget
    time.sleep(body["rate_reset"] + 0.01)
    assert get(server, "/activity/call/", s, _limit=1).status_code == 200
    assert server.stats()["by_endpoint"][("activity.call.list", 429)] == 1


def test_latency_knob(make_sandbox):
    server = make_sandbox(latency_ms=150)
    s = _session()
    get(server, "/me/", s)
    t0 = time.perf_counter()
    get(server, "/me/", s)
    assert time.perf_counter() - t0 >= 0.15
    server.latency_ms = 0
    t0 = time.perf_counter()
    get(server, "/me/", s)
    assert time.perf_counter() - t0 < 0.15


def test_fault_injection(make_sandbox):
    server = make_sandbox()
    s = _session()
    server.fail_next(1, "500")
    r = get(server, "/activity/call/", s)
    assert r.status_code == 500 and "error" in r.json()
    assert get(server, "/activity/call/", s).status_code == 200
    server.fail_next(1, "cut", group="activity")
    assert get(server, "/me/", s).status_code == 200  # other group unaffected
    with pytest.raises(requests.exceptions.ConnectionError):  # ChunkedEncodingError is not one
        try:
            get(server, "/activity/call/", s)
        except requests.exceptions.ChunkedEncodingError as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from exc
    assert get(server, "/activity/call/", s).status_code == 200
    server.fail_next(1, "garbage")
    r = get(server, "/activity/call/", s)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(r.content)
    server.fail_next(1, "429")
    r = get(server, "/event/", s)
    assert r.status_code == 429 and "rate_reset" in r.json()["error"]
    server.fail_next(2, "503")
    assert [get(server, "/user/", s).status_code for _ in range(3)] == [503, 503, 200]
    server.fault_rate = 1.0
    outcomes = []
    for _ in range(12):
        try:
            outcomes.append(get(server, "/me/", s).status_code)
        except requests.exceptions.RequestException:
            outcomes.append("cut")
    assert 200 not in outcomes and "cut" in outcomes and set(outcomes) - {"cut"} <= {500, 502, 503}
    server.fault_rate = 0.0
    st = server.stats()
    assert st["by_endpoint"][("activity.call.list", 0)] == 1  # cut connections count as status 0
    assert st["by_endpoint"][("user.list", 503)] == 2
    remote = requests.get(
        server.base_url.replace("/api/v1", "/_sandbox/stats"), auth=(KEY, ""), timeout=5
    ).json()
    assert remote["requests"] == st["requests"] and remote["by_endpoint"]["user.list 503"] == 2
    server.reset_stats()
    assert server.stats() == {"requests": 0, "by_endpoint": {}}


# ------------------------------------------------------------------------------------ data


def test_determinism():
    a = SandboxStore(calls=400, seed=3, start=START)
    b = SandboxStore(calls=400, seed=3, start=START)
    assert a.truth() == b.truth()
    ra, rb = random.Random(4), random.Random(4)
    for s in (a, b):
        s.advance(100)
    assert a.mutate_random(ra) == b.mutate_random(rb)
    assert a.truth() == b.truth() and a.all_events() == b.all_events()
    assert SandboxStore(calls=400, seed=4, start=START).truth() != a.truth()


def test_live_mode_determinism():
    t1 = datetime(2026, 3, 10, 8, 30, tzinfo=UTC)
    t2 = t1 + timedelta(days=2, hours=5)
    a = SandboxStore(calls=300, seed=11, start=t1, live=True)
    a.advance((t2 - t1).total_seconds())
    b = SandboxStore(calls=300, seed=11, start=t2, live=True)
    assert abs((a.now - b.now).total_seconds()) < 5
    assert a.truth() == b.truth()
    assert len(a.truth()) == live_size(300)
    assert b.deleted_ids <= a.deleted_ids  # a has played more hours, so deleted more calls
    assert [e["id"] for e in a.all_events()] == [e["id"] for e in b.all_events()]
    assert len(a.all_events()) > 100


def test_a_live_sandbox_serves_as_many_calls_a_year_later():
    """Its size depends on the seed and the options, not on the date, and so does the work of
    starting it: it plays the hours of its window and of the Event Log's retention, no more."""
    replayed = (HISTORY_DAYS + RETENTION_US // US_PER_DAY) * 24 + 1
    stores = [
        SandboxStore(calls=300, seed=11, start=START + timedelta(days=days), live=True)
        for days in (0, 365, 3 * 365)
    ]
    for store in stores:
        assert len(store) == len(store.truth()) == live_size(300) == 313
        assert store.hours_played == replayed
        oldest = min(ts(c["date_created"]) for c in store.truth().values())
        assert oldest >= store.now - timedelta(days=HISTORY_DAYS)
    assert stores[0].truth().keys().isdisjoint(stores[1].truth().keys())


def test_consecutive_hours_bring_new_edited_and_deleted_calls_each_in_the_event_log(
    make_sandbox,
):
    """Every hour a live sandbox creates, edits and deletes calls; what it stops serving is a
    `deleted` entry of its Event Log, what it starts serving a `created` one."""
    server = make_sandbox(calls=480, seed=4, start=START, live=True, history_days=10)
    store = server.store
    assert len(store) == live_size(480)
    served = {c["id"] for c in pull_all(server)}
    for _ in range(4):
        since = store.now
        store.advance(3600)
        now_served = {c["id"] for c in pull_all(server)}
        events = all_events(server, date_updated__gt=since.isoformat())
        by_action = {
            action: {e["object_id"] for e in events if e["action"] == action}
            for action in ("created", "updated", "deleted")
        }
        assert all(by_action.values()), {k: len(v) for k, v in by_action.items()}
        assert by_action["deleted"] == served - now_served
        assert by_action["created"] == now_served - served
        assert len(now_served) == live_size(480)
        served = now_served


def test_data_realism():
    store = SandboxStore(calls=4000, seed=2, start=START)
    calls = list(store.truth().values())
    users = {u["id"]: u for u in store.users}
    seen_extra = set()
    for c in calls:
        assert c["_type"] == "Call" and c["id"].startswith("acti_") and len(c["id"]) == 48
        assert set(CALL_FIELDS) <= set(c)
        assert (
            c["user_name"]
            == f"{users[c['user_id']]['first_name']} {users[c['user_id']]['last_name']}"
        )
        assert ts(c["date_updated"]) >= ts(c["date_created"]) and c["date_created"].endswith(
            "+00:00"
        )
        if c["disposition"] == "vm-answer":
            assert c["direction"] == "inbound"
        if c["disposition"] == "abandoned":
            assert c["call_method"] == "predictive"
        if c["disposition"] == "answered":
            assert c["duration"] > 0
        if c["disposition"] in ("busy", "blocked", "error"):
            assert c["duration"] == 0
        assert c["cost"] is None or (isinstance(c["cost"], str) and float(c["cost"]) >= 0)
        if c["source"] == "External":
            assert c["call_method"] == "external"
        if c["voicemail_url"]:
            assert c["disposition"] == "vm-left"
        seen_extra |= set(c) - set(CALL_FIELDS)
        for key in TRANSCRIPT_FIELDS:
            if key in c:
                ends = [u["end"] for u in c[key]["utterances"]]
                assert ends == sorted(ends)
    assert {
        "has_recording",
        "date_answered",
        "recording_transcript",
        "voicemail_transcript",
    } <= seen_extra
    assert any("." in c["date_created"] for c in calls) and any(
        "." not in c["date_created"] for c in calls
    )
    assert any(c["note"] and len(c["note"]) > 10_000 for c in calls)
    assert any(c["note"] and any(ord(ch) > 0xFFFF for ch in c["note"]) for c in calls)
    assert any(c["activity_at"] is None for c in calls)
    assert {c["disposition"] for c in calls} == {
        "answered",
        "no-answer",
        "vm-answer",
        "vm-left",
        "busy",
        "blocked",
        "error",
        "abandoned",
    }
    assert any("." in c["cost"] for c in calls if c["cost"])
    txs = [c["recording_transcript"] for c in calls if "recording_transcript" in c]
    assert any(not t["utterances"] for t in txs) and max(len(t["utterances"]) for t in txs) > 60
    utterances = [u for t in txs for u in t["utterances"]]
    # what real ASR output has, and the connector must survive: words with no length, speakers
    # talking over each other, unicode and markup-like text
    assert any(u["start"] == u["end"] for u in utterances)
    assert any(b["start"] < a["end"] for t in txs for a, b in pairwise(t["utterances"]))
    assert any(not u["text"].isascii() for u in utterances)
    assert any("<" in u["text"] or "&" in u["text"] for u in utterances)


# ------------------------------------------------------------------------------------ transcripts


def transcript_rule_breaks(call: dict) -> list[str]:
    """How the transcripts of `call` break the rules (none when they belong to their call).

    A recording transcript only on an answered call with a recording_url, a voicemail transcript
    only on a vm-left call with a voicemail_url; every utterance inside [0, duration] (voicemails:
    [0, voicemail_duration]) with start <= end (float seconds), spoken by the contact or the
    close-user side.
    """
    rules = (
        (
            "recording_transcript",
            call.get("disposition") == "answered" and bool(call.get("recording_url")),
            call.get("duration"),
        ),
        (
            "voicemail_transcript",
            call.get("disposition") == "vm-left" and bool(call.get("voicemail_url")),
            call.get("voicemail_duration"),
        ),
    )
    breaks = []
    for key, allowed, limit in rules:
        tx = call.get(key)
        if tx is None:
            continue
        what = f"{call['id']} ({call.get('disposition')}, {call.get('duration')} s) {key}"
        if not allowed:
            breaks.append(f"{what}: not allowed on this call")
            continue
        for i, u in enumerate(tx["utterances"]):
            if u["speaker_side"] not in ("contact", "close-user"):
                breaks.append(f"{what}[{i}]: speaker_side {u['speaker_side']!r}")
            if not (isinstance(u["start"], float) and isinstance(u["end"], float)):
                breaks.append(f"{what}[{i}]: times not floats: {u['start']!r}, {u['end']!r}")
            elif not 0 <= u["start"] <= u["end"] <= limit:
                breaks.append(f"{what}[{i}]: [{u['start']}, {u['end']}] outside [0, {limit}]")
    return breaks


def assert_transcripts_follow_their_calls(store: SandboxStore) -> None:
    breaks = [b for call in store.truth().values() for b in transcript_rule_breaks(call)]
    assert not breaks, f"{len(breaks)} rule breaks, e.g. {breaks[:5]}"


def test_transcripts_follow_their_calls_in_history_and_after_mutations():
    store = SandboxStore(calls=3000, seed=2, start=START)
    assert_transcripts_follow_their_calls(store)
    for i in range(8):
        store.advance(3600)
        store.mutate_random(random.Random(i), new=25, updated=60, deleted=3, old_share=0.4)
        assert_transcripts_follow_their_calls(store)
    # the rounds did add, change and delete transcripts
    events = store.all_events()
    for key in TRANSCRIPT_FIELDS:
        assert sum(key in e["changed_fields"] for e in events) >= 10, key
    # live mode: two weeks of hourly ticks on top of the seeded history
    live = SandboxStore(calls=1000, seed=11, start=datetime(2026, 1, 15, tzinfo=UTC), live=True)
    assert_transcripts_follow_their_calls(live)
    assert any("recording_transcript" in e["changed_fields"] for e in live.all_events())


def test_field_changes_keep_transcripts_fitting_their_call():
    store = SandboxStore(calls=2000, seed=2, start=START)
    truth = store.truth()
    long_calls = [
        c["id"]
        for c in truth.values()
        if c.get("recording_transcript", {}).get("utterances") and c["duration"] > 60
    ]
    shorter, unrecorded = long_calls[:2]
    store.update_call(shorter, duration=20)
    store.update_call(unrecorded, recording_url=None)
    vm = next(
        c["id"] for c in truth.values() if c.get("voicemail_transcript", {}).get("utterances")
    )
    store.update_call(vm, disposition="no-answer", voicemail_url=None)
    after = store.truth()
    assert after[shorter]["recording_transcript"]["utterances"]  # replaced by one that fits
    assert "recording_transcript" not in after[unrecorded]
    assert "voicemail_transcript" not in after[vm]
    assert_transcripts_follow_their_calls(store)
    changed = {e["object_id"]: e["changed_fields"] for e in store.all_events()}
    assert "recording_transcript" in changed[shorter] and "voicemail_transcript" in changed[vm]


def _user_stretches(utterances: list[dict]) -> list[float]:
    """Seconds of each uninterrupted stretch of the rep's speech (monologues)."""
    stretches, current, previous = [], 0.0, None
    for u in utterances:
        if u["speaker_side"] != previous:
            if previous == "close-user":
                stretches.append(current)
            current = 0.0
        current += u["end"] - u["start"]
        previous = u["speaker_side"]
    if previous == "close-user":
        stretches.append(current)
    return stretches


def test_reps_have_their_own_conversation_habits():
    from close_calls_pipeline.sandbox.transcripts import make_rep_habits

    store = SandboxStore(calls=4000, seed=2, start=START)
    user_names = {u["id"]: f"{u['first_name']} {u['last_name']}" for u in store.users}
    shares, monologues, asks, pauses = {}, {}, {}, {}
    questions = {"contact": 0, "close-user": 0}
    longest_turn = 0
    for call in store.truth().values():
        us = (call.get("recording_transcript") or {}).get("utterances")
        if not us:
            continue
        rep = call["user_id"]
        talk = {"contact": 0.0, "close-user": 0.0}
        turn = 0
        for i, u in enumerate(us):
            talk[u["speaker_side"]] += u["end"] - u["start"]
            questions[u["speaker_side"]] += u["text"].endswith("?")
            turn = turn + 1 if i and us[i - 1]["speaker_side"] == u["speaker_side"] else 1
            longest_turn = max(longest_turn, turn)
            if u["speaker_side"] == "close-user":
                assert u["speaker_label"] == user_names[rep]
                asks.setdefault(rep, []).append(u["text"].endswith("?"))
                if i and us[i - 1]["speaker_side"] == "contact":
                    pauses.setdefault(rep, []).append(u["start"] - us[i - 1]["end"])
        if sum(talk.values()) > 0:
            shares.setdefault(rep, []).append(talk["close-user"] / sum(talk.values()))
        monologues.setdefault(rep, []).append(max(_user_stretches(us), default=0.0))
    assert set(shares) == set(user_names)
    mean = {rep: sum(v) / len(v) for rep, v in shares.items()}
    assert max(mean.values()) > 0.6 and min(mean.values()) < 0.45, mean
    assert questions["contact"] > 50 and questions["close-user"] > 50
    assert longest_turn >= 3  # speakers hold the floor for several utterances
    # longest monologue, questions asked and patience differ from rep to rep too
    mono = [sum(v) / len(v) for v in monologues.values()]
    assert max(mono) > 2 * min(mono), mono
    ask = [sum(v) / len(v) for v in asks.values()]
    assert max(ask) > 1.5 * min(ask), ask
    pause = [sorted(v)[len(v) // 2] for v in pauses.values()]
    assert max(pause) > min(pause) + 0.5, pause
    # habits are a function of the seed and the user id, not of the order of the users
    ids = [u["id"] for u in store.users]
    assert make_rep_habits(2, ids) == make_rep_habits(2, ids[::-1])
    assert make_rep_habits(2, ids) != make_rep_habits(3, ids)
