"""`kill -9` at several points of a backfill: no duplicate is ever visible, a resumed walk reads
only what had not landed, and the finished warehouse and its sync_state equal the truth.

The sync runs in a child process (tests/helpers/sync_child.py) that SIGKILLs itself at a chosen stage; the
sandbox runs in this process, so it keeps its state and counts the requests of every attempt.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from helpers.truth import assert_warehouse_matches_truth

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

OPTIONS = {"workers": 2, "batch_size": 250, "window_count": 6}
CHILD = Path(__file__).parent / "helpers" / "sync_child.py"


def run_child(server, db: Path, stage: str | None = None, nth: int = 0):
    args = [sys.executable, str(CHILD), server.base_url, server.api_key, str(db),
            json.dumps(OPTIONS)] + ([stage, str(nth)] if stage else [])  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def duplicates(db: Path) -> tuple[int, int]:
    """Call ids and utterance keys that appear more than once (a reader's view of the file)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        (calls,) = con.execute("SELECT count(*) - count(DISTINCT id) FROM close.calls").fetchone()
        (utterances,) = con.execute(
            "SELECT count(*) - count(DISTINCT (call_id, transcript_type, utterance_index)) "
            "FROM close.call_transcript_utterances"
        ).fetchone()
        return calls, utterances
    finally:
        con.close()


def landed(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM close.calls").fetchone()[0]
    finally:
        con.close()


def test_kill_9_anywhere_in_a_backfill_shows_no_duplicate_and_resumes_where_it_landed(
    make_sandbox, tmp_path
):
    server = make_sandbox(calls=3000, seed=31)
    store = server.store

    full = run_child(server, tmp_path / "full.duckdb")
    assert full.returncode == 0, full.stderr
    full_requests = server.stats()["requests"]

    db = tmp_path / "killed.duckdb"
    kills = [("committed", 1), ("landed", 2), ("page", 9), ("state", 2), ("committed", 3)]
    requests, progress = [], []
    for stage, nth in kills:
        server.reset_stats()
        child = run_child(server, db, stage, nth)
        assert child.returncode == -signal.SIGKILL, (stage, nth, child.stderr[-2000:])
        requests.append(server.stats()["requests"])
        assert duplicates(db) == (0, 0), (stage, nth)
        progress.append(landed(db))
    assert progress == sorted(progress) and progress[-1] > 0  # each attempt built on the last

    server.reset_stats()
    last = run_child(server, db)
    assert last.returncode == 0, last.stderr
    summary = json.loads(last.stdout.strip().splitlines()[-1])
    resumed_requests = server.stats()["requests"]
    assert duplicates(db) == (0, 0)

    # The last attempt read only what had not landed (plus each window's seam page); every
    # attempt wasted at most what it had fetched ahead of its last commit: /me/, a batch, the
    # page queue, the pages in flight, a seam page per window. A restart from scratch would
    # cost a whole walk each time.
    share_landed = progress[-1] / 3000
    workers, windows = OPTIONS["workers"], OPTIONS["window_count"]
    assert resumed_requests < full_requests * (1 - share_landed) + windows + 2
    assert resumed_requests < full_requests / 2
    waste = 1 + OPTIONS["batch_size"] // 100 + 1 + 3 * workers + windows
    assert sum(requests) + resumed_requests <= full_requests + len(kills) * waste, (
        full_requests, requests, progress, resumed_requests)  # fmt: skip

    con = duckdb.connect(str(db))
    try:
        con.execute("SET TimeZone = 'UTC'")
        assert_warehouse_matches_truth(con, store)
        (utterances,) = con.execute(
            "SELECT count(*) FROM close.call_transcript_utterances"
        ).fetchone()
        row = con.execute(
            "SELECT mode, calls_inserted, calls_updated, utterances_written FROM close.sync_state"
        ).fetchall()
        assert row == [("backfill", 3000, 0, utterances)]
        assert (summary["calls_inserted"], summary["utterances_written"]) == (3000, utterances)
        assert con.execute("SELECT count(*) FROM close.sync_windows").fetchone()[0] == 0
    finally:
        con.close()


def test_a_walk_an_earlier_release_left_half_done_resumes_without_duplicates(
    make_sandbox, tmp_path
):
    """That release appended a backfill and removed repeated calls only when it completed, and
    kept no progress: the walk it left is adopted, its repeats removed before anything lands."""
    server = make_sandbox(calls=1500, seed=33)
    db = tmp_path / "legacy.duckdb"
    child = run_child(server, db, "committed", 2)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    con = duckdb.connect(str(db))
    try:  # what that release could leave: no progress kept, and calls landed twice
        con.execute("DELETE FROM close.sync_walk_progress")
        con.execute("UPDATE close.sync_windows SET landed_down_to = NULL")
        con.execute("CREATE TEMP TABLE twice AS SELECT * FROM close.calls LIMIT 40")
        con.execute(
            "INSERT INTO close.call_transcript_utterances SELECT u.* REPLACE "
            "(u._loaded_at - INTERVAL 1 HOUR AS _loaded_at) FROM close.call_transcript_utterances "
            "u JOIN twice t ON t.id = u.call_id"
        )
        con.execute(
            "INSERT INTO close.calls SELECT * REPLACE (_loaded_at - INTERVAL 1 HOUR AS _loaded_at) "
            "FROM twice"
        )
    finally:
        con.close()
    assert duplicates(db)[0] == 40

    child = run_child(server, db)
    assert child.returncode == 0, child.stderr
    assert duplicates(db) == (0, 0)
    con = duckdb.connect(str(db))
    try:
        con.execute("SET TimeZone = 'UTC'")
        assert_warehouse_matches_truth(con, server.store)
    finally:
        con.close()
