"""Landing batches in DuckDB: one transaction per batch, on one landing thread.

`land` is the transaction: the batch's calls and utterances, its quarantined records, the walk's
progress, and for the last batch of a run a `FinalCommit` (deletes, the sync state) given to it as
a value. It returns what it landed; it updates nothing else. `LandingThread` owns the thread: it
runs one landing at a time (DuckDB has one writer, and one batch in flight bounds memory) while
the caller fetches and types the next batch, and hands back each landing's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Self

import duckdb

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.records import Rejection
from close_calls_pipeline.core.sync.batches import Batch
from close_calls_pipeline.core.sync.options import SyncSummary, Totals
from close_calls_pipeline.core.sync.run import StageHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """How every batch of one run lands."""

    run_id: str
    own_since: datetime  # rows loaded since then are this run's (see warehouse.land_calls)
    drift_before: datetime | None = None  # reconcile: a change older than this is drift
    walk: bool = False  # keep the walk's progress (windows, totals) with each batch
    track_seen: bool = False  # record the ids landed in close.sync_seen_ids (a reconcile)
    walk_hashes: bool = False  # a backfill: the table holds only its calls (warehouse.land_calls)


@dataclass(frozen=True)
class FinalCommit:
    """What a run's last transaction commits besides its last batch."""

    summary: SyncSummary  # the run's row before this transaction's own counts are added
    deleted: dict[str, datetime] = field(default_factory=dict)  # call id -> when Close deleted it
    drift_deleted: int = 0  # of those, deletes the incremental should have seen
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)  # (object type, record)
    applied_events: list[tuple[str, str, datetime]] = field(default_factory=list)
    keep_events_from: datetime | None = None  # None: the run reads no events
    clear_walk: bool = False


def land(
    con: duckdb.DuckDBPyConnection,
    batch: Batch,
    target: Target,
    final: FinalCommit | None,
    stage: StageHook,
) -> tuple[Totals, SyncSummary | None]:
    """Land one batch in one transaction; returns what it landed, and the run's final summary
    (as committed to close.sync_state) when `final` is given."""
    typed, now = batch.typed, datetime.now(UTC)
    with warehouse.transaction(con):
        counts = warehouse.land_calls(
            con, typed.calls, typed.utterances,
            own_since=target.own_since, drift_before=target.drift_before,
            walk_hashes=target.walk_hashes,
        )  # fmt: skip
        warehouse.record_rejections(con, target.run_id, "call", typed.rejected, now)
        landed = Totals(
            calls_inserted=counts.inserted,
            calls_updated=counts.updated,
            utterances_written=counts.utterances,
            records_rejected=len(typed.rejected),
            records_repaired=typed.repaired,
            drift_calls=counts.drift,
        )
        if target.track_seen:
            warehouse.record_seen_ids(con, target.run_id, batch.ids())
        if target.walk:
            progress = batch.progress
            if progress is None:
                progress = warehouse.WINDOW_PROGRESS.empty_table()
            warehouse.advance_walk(con, target.run_id, progress, asdict(landed))
        stage("landed")
        summary = None
        if final is not None:
            landed = landed + _commit_final(con, target.run_id, final, now)
            summary = _final_summary(final.summary, landed)
            warehouse.append_sync_state(con, summary.as_dict())
        stage("state")
    stage("committed")
    if typed.rejected:
        log.warning("%d records rejected into close.rejected_records (first: %s)",
                    len(typed.rejected), typed.rejected[0].reason)  # fmt: skip
    if typed.repaired:
        log.warning("%d calls landed with a lone surrogate escape replaced by U+FFFD",
                    typed.repaired)  # fmt: skip
    return landed, summary


def _commit_final(
    con: duckdb.DuckDBPyConnection, run_id: str, final: FinalCommit, now: datetime
) -> Totals:
    """The deletes, quarantined events and bookkeeping of a run's last transaction."""
    deleted = warehouse.mark_deleted(con, final.deleted)
    for object_type, rejection in final.rejected:
        warehouse.record_rejections(con, run_id, object_type, [rejection], now)
    if final.keep_events_from is not None:
        warehouse.record_applied_events(con, final.applied_events, final.keep_events_from)
    if final.clear_walk:
        warehouse.clear_walk_plan(con)
    return Totals(
        calls_deleted=deleted,
        records_rejected=len(final.rejected),
        drift_calls=final.drift_deleted,
    )


def _final_summary(before: SyncSummary, landed: Totals) -> SyncSummary:
    """The run's summary with this transaction's counts added (drift stays None unless the run
    measures it)."""
    totals = {name: getattr(before, name) + value for name, value in asdict(landed).items()
              if name != "drift_calls"}  # fmt: skip
    if before.drift_calls is not None:
        totals["drift_calls"] = before.drift_calls + landed.drift_calls
    finished = datetime.now(UTC)
    duration = (finished - before.started_at).total_seconds()
    return replace(before, finished_at=finished, duration_seconds=duration, **totals)


class LandingThread:
    """The one thread that writes DuckDB while a run fetches: at most one landing in flight."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-landing")
        self._landing: Future | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                self.wait()
        finally:
            self._executor.shutdown(wait=True)

    def submit(self, fn: Callable, *args) -> list:
        """Start `fn(*args)` once the landing before it is done; returns that one's result (as a
        list of zero or one results), raising its error if it failed."""
        done = self.wait()
        self._landing = self._executor.submit(fn, *args)
        return done

    def wait(self) -> list:
        """Wait for the landing in flight; its result as a list of zero or one results."""
        if self._landing is None:
            return []
        landing, self._landing = self._landing, None
        return [landing.result()]

    def run(self, fn: Callable, *args):
        """Land after everything before it, and wait: returns (results before it, its result)."""
        before = self.submit(fn, *args)
        return before, self.wait()[0]
