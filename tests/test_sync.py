"""The sync against the sandbox over loopback HTTP, into real DuckDB files."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from helpers.truth import assert_warehouse_matches_truth, warehouse_contents

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseApiError, CloseClient
from close_calls_pipeline.core.sync import SyncOptions, split_range, sync_calls

FAST = SyncOptions(workers=4, batch_size=150, window_count=8)


def client_for(server, **kwargs) -> CloseClient:
    return CloseClient(server.api_key, server.base_url, **kwargs)


def test_backfill_then_random_rounds_of_changes_keep_the_warehouse_equal_to_close(
    make_sandbox, connect
):
    server = make_sandbox(calls=400, seed=3)
    store, con = server.store, connect()
    with client_for(server) as client:
        first = sync_calls(client, con, FAST)
        assert first.mode == "backfill"
        assert first.calls_inserted == 400
        assert_warehouse_matches_truth(con, store)

        rng = random.Random(11)
        for round_number in range(8):
            changes = store.mutate_random(rng, new=6, updated=12, deleted=3, old_share=0.4)
            store.advance(rng.uniform(1, 4000))
            summary = sync_calls(client, con, FAST)
            assert summary.mode == "incremental", round_number
            assert summary.calls_inserted == len(changes["created"]) - len(
                set(changes["created"]) & set(changes["deleted"])
            )
            assert_warehouse_matches_truth(con, store)

    marks = [
        r[0]
        for r in con.execute(
            "SELECT high_water_mark_after FROM close.sync_state ORDER BY finished_at"
        ).fetchall()
    ]
    assert marks == sorted(marks), "the high-water mark moved backwards"


def test_hourly_runs_against_a_live_sandbox_follow_its_sliding_window(make_sandbox, connect):
    """A live sandbox creates, edits and deletes calls every hour, the oldest as they leave its
    window: hourly incremental runs keep the warehouse equal to what it serves."""
    server = make_sandbox(calls=480, seed=6, live=True, history_days=10)
    store, con = server.store, connect()
    with client_for(server) as client:
        assert sync_calls(client, con, FAST).mode == "backfill"
        assert_warehouse_matches_truth(con, store)
        for hour in range(3):
            store.advance(3600)
            summary = sync_calls(client, con, FAST)
            assert summary.mode == "incremental", hour
            assert min(summary.calls_inserted, summary.calls_updated, summary.calls_deleted) > 0
            assert_warehouse_matches_truth(con, store)


def test_a_run_with_no_changes_changes_nothing(sandbox, connect):
    con = connect()
    with client_for(sandbox) as client:
        sync_calls(client, con, FAST)
        sandbox.store.advance(600)
        before = con.execute("SELECT * FROM close.calls ORDER BY id").fetchall()
        summary = sync_calls(client, con, FAST)
    assert (summary.calls_inserted, summary.calls_updated, summary.calls_deleted) == (0, 0, 0)
    assert con.execute("SELECT * FROM close.calls ORDER BY id").fetchall() == before


def test_incremental_requests_grow_with_changes_not_with_calls(make_sandbox, connect):
    server = make_sandbox(calls=20_000, seed=5)
    store, con = server.store, connect()
    with client_for(server) as client:
        backfill = sync_calls(client, con, SyncOptions(workers=8))
        counts = {}
        for changed in (5, 150):
            store.advance(120)
            for call_id in list(store.truth())[:changed]:
                store.update_call(call_id, note=f"changed {changed}")
            store.advance(120)
            server.reset_stats()
            summary = sync_calls(client, con, SyncOptions(workers=8))
            assert summary.calls_updated == changed
            counts[changed] = server.stats()["requests"]
    assert backfill.requests >= 200
    # 3 event actions + me + ceil(K/100) id batches; event pages are 50 events each
    assert counts[5] <= 8
    assert counts[150] <= 3 + 1 + 2 + 2 * 3 + 4
    assert counts[5] < backfill.requests / 20


def test_calls_on_window_edges_are_neither_lost_nor_duplicated(make_sandbox, connect):
    server = make_sandbox(calls=50, seed=8)
    store, con = server.store, connect()
    start = store.now - timedelta(days=200)
    end = store.now + timedelta(seconds=1)
    edges = [window_start for window_start, _ in split_range(start, end, 8)[1:]]
    for edge in edges:
        store.add_calls(2, at=edge)
    store.advance(1)
    with client_for(server) as client:
        sync_calls(client, con, SyncOptions(backfill_start=start, window_count=8, workers=4))
    assert_warehouse_matches_truth(con, store)
    on_edges = con.execute(
        "SELECT count(*) FROM close.calls WHERE date_created IN (SELECT unnest($1::TIMESTAMPTZ[]))",
        [edges],
    ).fetchall()[0][0]
    assert on_edges == 2 * len(edges)


def test_a_backfill_that_meets_calls_twice_keeps_the_last_copy_and_its_utterances(
    make_sandbox, connect
):
    # The client does not know the server's max_skip of 200: the pages it walks before learning
    # it come again after the split, each in a later batch than its first copy.
    server = make_sandbox(calls=1000, seed=12, max_skip=200)
    store, con = server.store, connect()
    changed: list[str] = []

    def change_every_transcript_once(stage: str) -> None:
        if stage == "landed" and not changed:  # so a second copy differs from the first
            changed.extend(store.call_ids())
            for call_id in changed:
                store.update_call(
                    call_id,
                    recording_transcript={
                        "summary_text": "changed",
                        "summary_html": None,
                        "utterances": [
                            {
                                "speaker_label": "A",
                                "speaker_side": "contact",
                                "start": 0.0,
                                "end": 1.5,
                                "text": f"new {call_id}",
                            }
                        ],
                    },
                )

    with client_for(server) as client:
        summary = sync_calls(
            client,
            con,
            SyncOptions(workers=1, batch_size=100, window_count=1),
            on_stage=change_every_transcript_once,
        )
        assert server.stats()["by_endpoint"][("activity.call.list", 400)] >= 1  # it did split
        assert summary.mode == "backfill"
        rows = con.execute("SELECT id, _raw FROM close.calls").fetchall()
        assert len(rows) == len({call_id for call_id, _ in rows}) == 1000
        assert summary.calls_inserted == 1000
        (utterances,) = con.execute(
            "SELECT count(*) FROM close.call_transcript_utterances"
        ).fetchall()[0]
        assert summary.utterances_written == utterances
        # Each kept row has exactly the utterances of its own payload, whichever copy it is.
        landed = {}
        for call_id, kind, index, text in con.execute(
            "SELECT call_id, transcript_type, utterance_index, text "
            "FROM close.call_transcript_utterances"
        ).fetchall():
            landed[(call_id, kind, index)] = text
        expected = {}
        for call_id, raw in rows:
            call = json.loads(raw)
            for kind in ("recording", "voicemail"):
                for index, u in enumerate(
                    (call.get(f"{kind}_transcript") or {}).get("utterances") or []
                ):
                    expected[(call_id, kind, index)] = u["text"]
        assert landed == expected
        assert any(text.startswith("new ") for text in landed.values())  # some copies are newer

        store.advance(10)
        sync_calls(client, con, FAST)
        assert_warehouse_matches_truth(con, store)


def test_boundary_cases_between_two_syncs(sandbox, connect):
    store, con = sandbox.store, connect()
    with client_for(sandbox) as client:
        sync_calls(client, con, FAST)
        ids = list(store.truth())

        # two events in the same millisecond (the clock does not move between them)
        store.update_call(ids[0], note="same instant A")
        store.update_call(ids[1], note="same instant B")
        # an empty transcript, and a transcript removed
        store.update_call(
            ids[2], recording_transcript={"utterances": [], "summary_text": "", "summary_html": ""}
        )
        with_transcript = next(
            i
            for i, c in store.truth().items()
            if c.get("recording_transcript") and c["recording_transcript"].get("utterances")
        )
        store.update_call(with_transcript, recording_transcript=None)
        # updated and then deleted between two syncs
        store.update_call(ids[3], note="about to go")
        store.delete_call(ids[3])
        # an outcome id that no longer exists
        store.update_call(ids[4], outcome_id="outcome_doesnotexist000000000000000000000")
        store.advance(30)
        sync_calls(client, con, FAST)
        assert_warehouse_matches_truth(con, store)
        assert (
            con.execute(
                "SELECT count(*) FROM close.call_transcript_utterances WHERE call_id = ?",
                [with_transcript],
            ).fetchall()[0][0]
            == 0
        )
        assert (
            con.execute(
                "SELECT has_recording_transcript FROM close.calls WHERE id = ?", [ids[2]]
            ).fetchall()[0][0]
            is True
        )
        assert con.execute(
            "SELECT _deleted_at IS NOT NULL FROM close.calls WHERE id = ?", [ids[3]]
        ).fetchall()[0][0]

        # an event consolidated after the previous sync read it: same event, date_updated moves
        store.update_call(ids[5], note="first edit")
        store.advance(10)
        sync_calls(client, con, FAST)
        store.advance(20)
        store.update_call(ids[5], note="second edit, consolidated into the same event")
        store.advance(10)
        sync_calls(client, con, FAST)
        assert con.execute("SELECT note FROM close.calls WHERE id = ?", [ids[5]]).fetchall()[0][
            0
        ] == ("second edit, consolidated into the same event")
        assert_warehouse_matches_truth(con, store)


def test_bad_records_are_quarantined_and_the_rest_lands(sandbox, connect):
    store, con = sandbox.store, connect()
    good = next(iter(store.truth().values()))
    at = store.now - timedelta(days=3)
    bad = [
        dict(good, id="acti_badcost", cost="twelve"),
        dict(good, id="acti_badtime", date_updated="yesterday-ish"),
        dict(good, id="acti_badtranscript", recording_transcript={"utterances": "nope"}),
        {k: v for k, v in good.items() if k != "id"},
    ]
    for record in bad:
        store.put_raw_call(record, at=at)
    with client_for(sandbox) as client:
        summary = sync_calls(client, con, FAST)
        assert summary.records_rejected == 4
        reasons = dict(
            con.execute(
                "SELECT coalesce(object_id, '?'), reason FROM close.rejected_records"
            ).fetchall()
        )
        assert "cost" in reasons["acti_badcost"]
        assert "date_updated" in reasons["acti_badtime"]
        assert "recording_transcript" in reasons["acti_badtranscript"]
        assert "id" in reasons["?"]
        live = {
            r[0]
            for r in con.execute("SELECT id FROM close.calls WHERE _deleted_at IS NULL").fetchall()
        }
        served_ids = {call.get("id") for call in store.truth().values()}
        assert live == served_ids - {None, "acti_badcost", "acti_badtime", "acti_badtranscript"}
        assert warehouse.high_water_mark(con) is not None
        # a re-run quarantines nothing twice
        store.advance(60)
        sync_calls(client, con, SyncOptions(reconcile=True, workers=4, window_count=4))
        assert con.execute("SELECT count(*) FROM close.rejected_records").fetchall()[0][0] == 4
        # rejected ids exist in Close: a reconcile must not mark anything deleted for them
        assert (
            con.execute(
                "SELECT count(*) FROM close.calls WHERE _deleted_at IS NOT NULL"
            ).fetchall()[0][0]
            == 0
        )


class Crash(Exception):
    pass


def crash_at(stage: str, nth: int):
    seen = {"count": 0}

    def hook(name: str) -> None:
        if name == stage:
            seen["count"] += 1
            if seen["count"] == nth:
                raise Crash(f"injected at {stage} #{nth}")

    return hook


@pytest.mark.parametrize("phase", ["backfill", "incremental"])
@pytest.mark.parametrize("stage,nth", [("page", 2), ("landed", 1), ("landed", 2), ("state", 1)])
def test_a_crash_anywhere_then_a_rerun_gives_the_uninterrupted_warehouse(
    make_sandbox, connect, phase, stage, nth
):
    server = make_sandbox(calls=500, seed=21)
    store = server.store
    reference, crashed = connect("reference.duckdb"), connect("crashed.duckdb")
    options = SyncOptions(workers=4, batch_size=100, window_count=6)
    with client_for(server) as client:
        if phase == "incremental":
            sync_calls(client, reference, options)
            sync_calls(client, crashed, options)
            store.mutate_random(random.Random(2), new=120, updated=150, deleted=20)
            store.advance(100)
        sync_calls(client, reference, options)
        with pytest.raises(Crash):
            sync_calls(client, crashed, options, on_stage=crash_at(stage, nth))
        sync_calls(client, crashed, options)
    assert warehouse_contents(crashed) == warehouse_contents(reference)
    assert_warehouse_matches_truth(crashed, store)


def test_an_interrupted_backfill_resumes_without_refetching_finished_windows(make_sandbox, connect):
    server = make_sandbox(calls=2_000, seed=4)
    con = connect()
    options = SyncOptions(workers=1, batch_size=100, window_count=10)
    with client_for(server, max_attempts=2) as client:
        full = connect("full.duckdb")
        complete = sync_calls(client, full, options)
        # the API fails for good in the middle of the walk
        with pytest.raises(Crash):
            sync_calls(client, con, options, on_stage=crash_at("landed", 12))
        server.reset_stats()
        resumed = sync_calls(client, con, options)
    assert resumed.mode == "backfill"
    assert resumed.requests < complete.requests * 0.7
    assert_warehouse_matches_truth(con, server.store)


def test_a_window_is_done_only_once_all_its_calls_have_landed(make_sandbox, connect):
    """Batches are cut at a fixed number of calls, not at page or window ends: a crash after a
    batch that ended inside a finished window must not leave the rest of that window unfetched."""
    server = make_sandbox(calls=600, seed=12)
    options = SyncOptions(workers=1, batch_size=120, window_count=12)
    with client_for(server) as client:
        for nth in range(3, 9):
            con = connect(f"crashed-at-page-{nth}.duckdb")
            with pytest.raises(Crash):
                sync_calls(client, con, options, on_stage=crash_at("page", nth))
            sync_calls(client, con, options)
            assert_warehouse_matches_truth(con, server.store)


def test_batches_are_cut_by_size_too_so_large_calls_do_not_make_large_batches(
    make_sandbox, connect
):
    server = make_sandbox(calls=600, seed=13)
    landed = []
    options = SyncOptions(workers=2, batch_size=10_000, batch_bytes=60_000, window_count=4)
    with client_for(server) as client:
        con = connect()
        sync_calls(client, con, options, on_stage=lambda stage: landed.append(stage == "landed"))
    sizes = [len(json.dumps(call)) for call in server.store.truth().values()]
    assert min(sizes) * 100 > 60_000  # so each page (of up to 100 calls) fills a batch
    assert sum(landed) >= len(sizes) / 100
    assert_warehouse_matches_truth(con, server.store)


def test_api_failure_mid_backfill_commits_nothing_wrong_and_the_rerun_completes(
    make_sandbox, connect
):
    server = make_sandbox(calls=600, seed=9)
    con = connect()

    pages = []

    def break_the_api_after_two_pages(name: str) -> None:
        if name == "page":
            pages.append(name)
            if len(pages) == 2:
                server.fail_next(3, "503", group="activity")

    # One fetching thread and 16 windows of a page each: when the second page is handed over,
    # the thread has asked for at most three more (two queued, one waiting to be), so requests
    # are left for the failure to hit. With more threads they can all be done by then.
    one_thread = SyncOptions(workers=1, batch_size=150, window_count=16)
    with client_for(server, max_attempts=1) as client, pytest.raises(CloseApiError) as failure:
        sync_calls(client, con, one_thread, on_stage=break_the_api_after_two_pages)
    assert "503" in str(failure.value)
    assert warehouse.high_water_mark(con) is None
    with client_for(server) as client:  # retries through any failure left over
        sync_calls(client, con, FAST)
    assert_warehouse_matches_truth(con, server.store)


def test_reconcile_when_the_mark_is_older_than_the_event_log(sandbox, connect):
    store, con = sandbox.store, connect()
    with client_for(sandbox) as client:
        sync_calls(client, con, FAST)
        gone = list(store.truth())[:5]
        for call_id in gone:
            store.delete_call(call_id)
        store.update_call(next(iter(store.truth())), note="edited while nobody looked")
        store.advance(timedelta(days=31).total_seconds())  # those events have expired
        summary = sync_calls(client, con, FAST)
    assert summary.mode == "reconcile"
    assert summary.calls_deleted == 5
    assert_warehouse_matches_truth(con, store)


def test_forced_reconcile_marks_silently_missing_calls_deleted(sandbox, connect):
    store, con = sandbox.store, connect()
    with client_for(sandbox) as client:
        sync_calls(client, con, FAST)
        # a call the warehouse holds that Close no longer has, without any event about it
        con.execute(
            "INSERT INTO close.calls BY NAME SELECT * REPLACE ('acti_ghost' AS id) "
            "FROM close.calls LIMIT 1"
        )
        summary = sync_calls(client, con, SyncOptions(reconcile=True, workers=4, window_count=4))
    assert summary.mode == "reconcile"
    assert summary.calls_deleted == 1
    assert con.execute(
        "SELECT _deleted_at IS NOT NULL FROM close.calls WHERE id = 'acti_ghost'"
    ).fetchall()[0][0]
    con.execute("DELETE FROM close.calls WHERE id = 'acti_ghost'")
    assert_warehouse_matches_truth(con, store)
