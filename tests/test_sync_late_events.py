"""Event Log entries that become visible late: a long enough overlap lands them all; a short one
loses them, and a reconcile finds the calls it missed and reports them as drift."""

from __future__ import annotations

import json
import random

from helpers.truth import assert_warehouse_matches_truth, expected_payload

from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.sync import SyncOptions, sync_calls

LATE = 30 * 60  # seconds between an entry's date_updated and when /event/ shows it
ROUND = 10 * 60  # an incremental run every ten minutes


def options(overlap_minutes: float, **kwargs) -> SyncOptions:
    return SyncOptions(workers=4, batch_size=150, window_count=4,
                       event_overlap_minutes=overlap_minutes, **kwargs)  # fmt: skip


def drifted(con, store) -> int:
    """Calls whose warehouse row differs from Close: missing, stale, or deleted in Close only."""
    truth = store.truth()
    rows = dict(
        con.execute("SELECT id, _raw FROM close.calls WHERE _deleted_at IS NULL").fetchall()
    )
    missing = set(truth) - set(rows)
    stale = {i for i in set(truth) & set(rows)
             if json.loads(rows[i]) != expected_payload(truth[i])}  # fmt: skip
    undeleted = set(rows) - set(truth)
    return len(missing) + len(stale) + len(undeleted)


def test_late_events_are_landed_with_a_long_overlap_and_counted_as_drift_with_a_short_one(
    make_sandbox, connect
):
    server = make_sandbox(calls=400, seed=41)
    store = server.store
    long, short = connect("overlap-60.duckdb"), connect("overlap-5.duckdb")
    with CloseClient(server.api_key, server.base_url) as client:
        for con in (long, short):
            sync_calls(client, con, options(60))
        rng = random.Random(5)
        requests = {60: 0, 5: 0}
        for _ in range(6):
            store.mutate_random(rng, new=2, updated=5, deleted=1)  # on time
            store.event_delay_s = LATE
            store.mutate_random(rng, new=2, updated=5, deleted=1)  # written 30 minutes late
            store.event_delay_s = 0
            store.advance(ROUND)
            for overlap, con in ((60, long), (5, short)):
                summary = sync_calls(client, con, options(overlap))
                assert summary.mode == "incremental" and summary.drift_calls is None
                requests[overlap] += summary.requests
        for _ in range(4):  # quiet time: every late entry becomes visible
            store.advance(ROUND)
            for overlap, con in ((60, long), (5, short)):
                requests[overlap] += sync_calls(client, con, options(overlap)).requests

        assert_warehouse_matches_truth(long, store)
        missed = drifted(short, store)
        assert missed > 0, "a 5-minute overlap should have lost late entries"

        store.advance(ROUND)
        for overlap, con in ((60, long), (5, short)):
            summary = sync_calls(client, con, options(overlap, reconcile=True))
            assert summary.mode == "reconcile"
            assert summary.drift_calls == (0 if overlap == 60 else missed)
            row = con.execute(
                "SELECT drift_calls FROM close.sync_state ORDER BY finished_at DESC LIMIT 1"
            ).fetchall()
            assert row == [(summary.drift_calls,)]
            assert_warehouse_matches_truth(con, store)
    # what the longer overlap cost: event pages only (applied events are not fetched again)
    assert requests[60] <= requests[5] * 1.5, requests
