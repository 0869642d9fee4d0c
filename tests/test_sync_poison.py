"""Records Close serves broken (not UTF-8, a lone surrogate, cut in the middle): the sync quarantines
or repairs them, lands everything else, moves its mark, and never takes them for deleted calls.
Over real HTTP against the sandbox, into real DuckDB files."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from helpers.truth import expected_payload

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.sync import SyncOptions, sync_calls

FAST = SyncOptions(workers=4, batch_size=150, window_count=8)
RECONCILE = SyncOptions(workers=4, batch_size=150, window_count=8, reconcile=True)
PLACEHOLDER = b'"__NOTE__"'


def client_for(server) -> CloseClient:
    return CloseClient(server.api_key, server.base_url)


def served(store, call_id: str) -> bytes:
    """A call's JSON as the API serves it to the sync, with its note as a placeholder."""
    call = expected_payload(store.truth()[call_id])
    call["note"] = "__NOTE__"
    return orjson.dumps(call)


def with_transcripts(store, n: int) -> list[str]:
    ids = [
        call_id
        for call_id, call in store.truth().items()
        if ((call.get("recording_transcript") or {}).get("utterances") or [])
    ]
    return ids[:n]


def break_calls(store, ids: list[str], *, event: bool = False) -> dict[str, bytes]:
    """Serve the calls `ids` broken: a lone surrogate, bytes that are not UTF-8, cut in the middle,
    and (a fourth id, if given) an id that is itself not UTF-8."""
    kinds = {}
    surrogate, not_utf8, cut = ids[:3]
    kinds[surrogate] = served(store, surrogate).replace(PLACEHOLDER, b'"before \\ud800 after"')
    kinds[not_utf8] = served(store, not_utf8).replace(PLACEHOLDER, b'"caf\xe9 \xff\xfe"')
    body = served(store, cut)
    kinds[cut] = body[: body.index(PLACEHOLDER) + 5]  # inside the note, ids and dates before it
    if len(ids) > 3:
        broken_id = ids[3]
        body = served(store, broken_id).replace(PLACEHOLDER, b'"x"')
        kinds[broken_id] = body.replace(broken_id.encode(), broken_id.encode()[:-2] + b"\xff\xfe")
    for call_id, raw in kinds.items():
        store.put_raw_call_bytes(call_id, raw, event=event)
    return kinds


def live_ids(con) -> set[str]:
    rows = con.execute("SELECT id FROM close.calls WHERE _deleted_at IS NULL").fetchall()
    return {r[0] for r in rows}


def utterances_of(con, call_id: str) -> int:
    return con.execute(
        "SELECT count(*) FROM close.call_transcript_utterances WHERE call_id = ?", [call_id]
    ).fetchall()[0][0]


def assert_others_equal_truth(con, store, broken: set[str]) -> None:
    """Every call but the broken ones is in the warehouse exactly as Close has it."""
    truth = store.truth()
    rows = dict(
        con.execute("SELECT id, _raw FROM close.calls WHERE _deleted_at IS NULL").fetchall()
    )
    assert set(truth) - broken <= set(rows)
    for call_id, call in truth.items():
        if call_id not in broken:
            assert orjson.loads(rows[call_id]) == expected_payload(call), call_id
    (dupes,) = con.execute("SELECT count(*) - count(DISTINCT id) FROM close.calls").fetchall()[0]
    assert dupes == 0


def test_backfill_lands_everything_but_the_unreadable_calls_and_retries_nothing(
    make_sandbox, connect
):
    # one clock for both: the walk's windows (and so its request count) follow the server's time
    start = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
    clean = make_sandbox(calls=3000, seed=7, start=start)
    broken_server = make_sandbox(calls=3000, seed=7, start=start)
    store = broken_server.store
    surrogate, not_utf8, cut = ids = with_transcripts(store, 3)
    break_calls(store, ids)
    with client_for(clean) as client:
        reference = sync_calls(client, connect("clean.duckdb"), FAST)
    con = connect()
    with client_for(broken_server) as client:
        summary = sync_calls(client, con, FAST)

    assert summary.mode == "backfill"
    assert summary.calls_inserted == 3000 - 2  # the surrogate one lands
    assert (summary.records_rejected, summary.records_repaired, summary.retries) == (2, 1, 0)
    # a page that does not decode is read as it is: not one request more than a clean backfill
    assert summary.requests == reference.requests == broken_server.stats()["requests"]
    assert warehouse.high_water_mark(con) is not None
    assert_others_equal_truth(con, store, {not_utf8, cut})

    note = con.execute("SELECT note, _raw->>'$.note' FROM close.calls WHERE id = ?",
                       [surrogate]).fetchall()[0]  # fmt: skip
    assert note == ("before \ufffd after", "before \ufffd after")
    assert utterances_of(con, surrogate) > 0
    rejected = con.execute(
        "SELECT object_id, reason, payload_bytes FROM close.rejected_records ORDER BY object_id"
    ).fetchall()
    assert {r[0] for r in rejected} == {not_utf8, cut}
    by_id = {r[0]: r for r in rejected}
    assert b"\xff\xfe" in by_id[not_utf8][2] and "not UTF-8" in by_id[not_utf8][1]
    assert by_id[cut][2] == store.get(cut).body  # the bytes as received


def test_incremental_and_reconcile_never_take_an_unreadable_call_for_deleted(make_sandbox, connect):
    server = make_sandbox(calls=600, seed=17)
    store, con = server.store, connect()
    with client_for(server) as client:
        sync_calls(client, con, FAST)
        ids = with_transcripts(store, 4)
        surrogate, not_utf8, cut, no_id = ids
        before = {call_id: utterances_of(con, call_id) for call_id in ids}
        assert all(before.values())
        store.advance(60)
        break_calls(store, ids, event=True)  # the Event Log entries carry the same bytes
        others = [i for i in store.call_ids() if i not in ids]
        gone = others[0]
        store.delete_call(gone)
        for call_id in others[1:4]:  # the other changes of the same run land as usual
            store.update_call(call_id, note="edited next to broken calls")
        created = store.add_calls(2)
        store.advance(600)
        mark = warehouse.high_water_mark(con)

        summary = sync_calls(client, con, FAST)
        assert summary.mode == "incremental"
        assert summary.calls_deleted == 1  # the call deleted for real, nothing else
        assert summary.records_repaired == 1 and summary.calls_updated == 1 + 3
        assert summary.calls_inserted == len(created)
        # the three calls that do not parse (one without a readable id), and the cut Event
        # Log entry
        assert summary.records_rejected == 4
        assert summary.high_water_mark_after > mark
        assert live_ids(con) >= set(ids)
        for call_id in (not_utf8, cut, no_id):  # the copy from before stays, with its utterances
            assert utterances_of(con, call_id) == before[call_id]
        assert_others_equal_truth(con, store, set(ids))

        store.advance(600)
        reconcile = sync_calls(client, con, RECONCILE)
        assert reconcile.mode == "reconcile"
        assert reconcile.calls_deleted == 0
        assert live_ids(con) >= set(ids)
        for call_id in (not_utf8, cut, no_id):
            assert utterances_of(con, call_id) == before[call_id]
        assert_others_equal_truth(con, store, set(ids))

        # once Close serves them again, the next incremental run lands them
        for call_id in (not_utf8, cut, no_id):
            store.fix_raw_call(call_id)
        store.advance(600)
        sync_calls(client, con, FAST)
        assert_others_equal_truth(con, store, {surrogate})


def test_an_answer_with_an_unidentifiable_record_deletes_nothing_it_might_be(make_sandbox, connect):
    """A reconcile asks by id for the live calls its walk did not see; an answer holding a record
    whose id cannot be read is no evidence for that record's id, but still is for the others."""
    server = make_sandbox(calls=300, seed=23)
    store, con = server.store, connect()
    with client_for(server) as client:
        sync_calls(client, con, FAST)
        a, b, c, no_id = with_transcripts(store, 4)
        break_calls(store, [a, b, c, no_id])
        # two calls that vanish from Close without an event
        for call_id in store.call_ids()[:2]:
            store._calls.remove(store._calls.by_id[call_id])  # a delete Close never reported
        store.advance(60)
        summary = sync_calls(client, con, RECONCILE)
    assert summary.calls_deleted == 2
    assert no_id in live_ids(con)
