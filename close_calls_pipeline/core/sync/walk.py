"""The walk (backfill and reconcile): every call by half-open `date_created` windows.

Windows are fetched concurrently and landed in batches. The plan is stored in DuckDB; each batch
records, in its own transaction, how far down each window it landed (Close lists a window newest
first), so an interrupted walk resumes with each window narrowed to what did not land. A call met
twice (a split window, the seam of a resumed window) is upserted, never duplicated.

When a reconcile has walked every window, the live calls it did not see are asked for by id: only
those Close's answer lacks are deleted (offset paging can miss a call when another is deleted
mid-walk, and a record that could not be read proves nothing). What the reconcile changes that
the incremental should already have changed is drift, and is counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient, WindowPage
from close_calls_pipeline.core.records import TIMESTAMP, RecordError, to_timestamp
from close_calls_pipeline.core.sync.batches import Batch, Batcher
from close_calls_pipeline.core.sync.by_id import fetch_and_land_by_ids
from close_calls_pipeline.core.sync.fetch import fetch_concurrently
from close_calls_pipeline.core.sync.landing import FinalCommit, LandingThread, Target, land
from close_calls_pipeline.core.sync.options import MARK_LAG, MassDeleteError, SyncSummary, Totals
from close_calls_pipeline.core.sync.run import Run
from close_calls_pipeline.core.warehouse import WalkPlan, Window

log = logging.getLogger(__name__)

EARLIEST_SEARCH_FROM = datetime(2000, 1, 1, tzinfo=UTC)
# A resumed window is read again down from this much above where it had landed: Close's filter
# and the text of date_created may differ in precision, and the calls re-read are upserts.
RESUME_MARGIN = timedelta(seconds=1)


def split_range(start: datetime, end: datetime, count: int) -> list[Window]:
    """`count` adjacent half-open windows covering [start, end), on whole microseconds."""
    step = (end - start) / max(1, count)
    step = max(step, timedelta(seconds=1))
    bounds = [start]
    while bounds[-1] + step < end:
        bounds.append(bounds[-1] + step)
    bounds.append(end)
    return list(pairwise(bounds))


def earliest_call_time(client: CloseClient, now: datetime) -> datetime:
    """Binary-search the date_created of the oldest call (to the day) with `_limit=1` probes:
    about 14 requests, instead of walking empty windows back to 2000."""
    if not client.has_calls_before(now):
        return now
    low, high = EARLIEST_SEARCH_FROM, now
    if client.has_calls_before(low):
        return datetime(1970, 1, 1, tzinfo=UTC)
    while high - low > timedelta(days=1):  # invariant: nothing before low, something before high
        middle = low + (high - low) / 2
        if client.has_calls_before(middle):
            high = middle
        else:
            low = middle
    return low


def plan_walk(run: Run) -> WalkPlan:
    """A new walk over all history (or from `backfill_start`), stored before anything lands."""
    start = run.options.backfill_start or _oldest_known_call(run)
    end = run.server_now + timedelta(seconds=1)
    windows = split_range(start, end, run.options.window_count)
    plan = WalkPlan(
        run.run_id, run.mode, run.server_now, run.server_now - MARK_LAG, windows, windows,
        landed_down_to={}, loaded_since=run.started_at, totals={},
    )  # fmt: skip
    with warehouse.transaction(run.con):
        warehouse.save_walk_plan(run.con, plan)
    log.info("walking %d date_created windows from %s to %s", len(windows), start, end)
    return plan


def _oldest_known_call(run: Run) -> datetime:
    """Where a walk over all history starts: the oldest call in Close or in the warehouse (so that
    a reconcile also covers calls deleted from the oldest end)."""
    oldest_in_close = earliest_call_time(run.client, run.server_now)
    (oldest_here,) = run.con.execute(
        "SELECT min(date_created) FROM close.calls WHERE _deleted_at IS NULL"
    ).fetchall()[0]
    return min(filter(None, [oldest_in_close, oldest_here]))


@dataclass(frozen=True)
class WindowTask:
    """A window of the plan, and the part of it still to read."""

    window: Window
    start: datetime
    end: datetime


def tasks_left(plan: WalkPlan) -> list[WindowTask]:
    """The windows not done, each narrowed to below where it had landed."""
    tasks = []
    for window in plan.pending:
        down_to = plan.landed_down_to.get(window)
        end = window[1] if down_to is None else min(window[1], down_to + RESUME_MARGIN)
        tasks.append(WindowTask(window, window[0], end))
    return tasks


class _Created(msgspec.Struct):
    date_created: str | None = None


_decode_created = msgspec.json.Decoder(_Created).decode


def _created(raw: bytes) -> datetime | None:
    try:
        return to_timestamp(_decode_created(raw).date_created)
    except (msgspec.DecodeError, RecordError):
        return None


class NewestFirst:
    """Checks that each window's pages come newest `date_created` first, which resuming a window
    by date_created relies on, from the first and last call of each page (cheap)."""

    def __init__(self) -> None:
        self.oldest: dict[Window, datetime] = {}

    def holds(self, window: Window, page: WindowPage) -> bool:
        first, last = _created(page.calls[0]), _created(page.calls[-1])
        if page.skip == 0:  # a new sequence: the window, or a half of it after a split
            self.oldest.pop(window, None)
        if first is None or last is None:
            return True  # cannot tell from this page
        previous = self.oldest.get(window)
        self.oldest[window] = last
        return first >= last and (previous is None or first <= previous)


def walk(run: Run, plan: WalkPlan | None) -> SyncSummary:
    """Run (or resume) a walk to its end; returns what it committed."""
    if plan is None:
        plan = plan_walk(run)
    elif plan.legacy:
        plan = _adopt_legacy_walk(run, plan)
    else:
        log.info("resuming walk %s: %d of %d windows left (%d part landed)", plan.run_id,
                 len(plan.pending), len(plan.windows), len(plan.landed_down_to))  # fmt: skip
    reconciling = plan.mode == "reconcile"
    overlap = run.options.event_overlap
    measures_drift = reconciling and run.mark_before is not None
    target = Target(
        plan.run_id,
        own_since=plan.loaded_since,
        drift_before=run.mark_before - overlap if measures_drift else None,
        walk=True,
        track_seen=reconciling,
        walk_hashes=not reconciling,
    )
    mark_after = max(filter(None, [run.mark_before, plan.high_water_mark]))
    totals = Totals.of(plan.totals)
    batcher = Batcher(run.options.batch_size, run.options.batch_bytes, run.police)
    tasks = tasks_left(plan)
    windows = [task.window for task in tasks]
    with LandingThread() as lander:
        totals += _read_windows(run, tasks, batcher, lander, target)
        last = with_progress(batcher.rest(), windows)
        if not reconciling:
            totals += _sum(lander.wait())
            final = FinalCommit(run.summary(totals, mark_after, False), clear_walk=True)
            _, (_, summary) = lander.run(land, run.con, last, target, final, run.stage)
            return summary
        before, (landed, _) = lander.run(land, run.con, last, target, None, run.stage)
        totals += _sum(before) + landed
        return _confirm_unseen(run, plan, batcher, lander, target, totals, mark_after)


def _refuse_mass_delete(run: Run, deleting: int) -> None:
    """Stop before a reconcile deletes more than the allowed share of the live calls. What the
    walk landed stays; its plan too, so the next run asks Close for the missing calls again
    and deletes them only if they are still missing and the share is allowed (or told to)."""
    (live,) = run.con.execute(
        "SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL"
    ).fetchone()
    limit = run.options.max_delete_share
    if not deleting or run.options.allow_mass_delete or deleting <= limit * live:
        return
    raise MassDeleteError(
        f"the reconcile stopped before deleting anything: {deleting} of the {live} live calls "
        f"({deleting / live:.0%}) are missing from Close, more than the {limit:.0%} allowed "
        "(max_reconcile_delete_share). So many deletes at once are far more likely a wrong API "
        "key or organization, or an API fault, than calls deleted in Close: check the key and "
        "the organization; if the calls really are gone, run again with --allow-mass-delete "
        "(run config allow_mass_delete: true)."
    )


def _adopt_legacy_walk(run: Run, plan: WalkPlan) -> WalkPlan:
    """A walk an earlier release planned: it appended, so its calls may be repeated. Remove the
    repeats and start keeping progress (what it landed before is not counted)."""
    plan = replace(plan, loaded_since=run.started_at, legacy=False)
    with warehouse.transaction(run.con):
        removed = warehouse.remove_duplicate_calls(run.con)
        warehouse.start_walk_progress(run.con, plan)
        warehouse.remember_walk_hashes(run.con)
    log.warning("resuming walk %s planned by an earlier release: removed %d repeated calls",
                plan.run_id, removed)  # fmt: skip
    return plan


def _sum(results: list[tuple[Totals, SyncSummary | None]]) -> Totals:
    total = Totals()
    for landed, _ in results:
        total += landed
    return total


def _read_windows(
    run: Run, tasks: list[WindowTask], batcher: Batcher, lander: LandingThread, target: Target
) -> Totals:
    """Fetch the windows' pages concurrently and land them batch by batch."""
    totals, order = Totals(), NewestFirst()
    windows = [task.window for task in tasks]

    def fetch(task: WindowTask):
        return run.client.iter_call_window_pages(task.start, task.end)

    for task, page in fetch_concurrently(tasks, fetch, run.options.workers):
        if page is None:
            batcher.window_done(task.window)
            continue
        if not order.holds(task.window, page):
            log.warning("window %s was not listed newest first: it will resume from its start",
                        task.window)  # fmt: skip
            batcher.window_out_of_order(task.window)
        run.stage("page")
        batch = batcher.add(page.calls)
        if batch is not None:
            batch = with_progress(batch, windows)
            totals += _sum(lander.submit(land, run.con, batch, target, None, run.stage))
    return totals


def with_progress(batch: Batch, windows: list[Window]) -> Batch:
    """The batch with the progress it makes in each window (computed here, off the landing
    thread): the oldest of its calls in the window, done, or read out of order."""
    created = batch.typed.calls.column("date_created")
    done = set(batch.windows_done)
    rows = []
    for window in windows:
        if window in done or window in batch.out_of_order:
            rows.append((window[0], None, window in done, window not in done))
            continue
        start, end = pa.scalar(window[0], TIMESTAMP), pa.scalar(window[1], TIMESTAMP)
        inside = pc.and_(pc.greater_equal(created, start), pc.less(created, end))
        oldest = pc.min(pc.filter(created, inside)).as_py()
        if oldest is not None:
            rows.append((window[0], oldest, False, False))
    columns = list(zip(*rows)) if rows else [[]] * 4
    return replace(batch, progress=pa.table(
        [pa.array(c, f.type) for c, f in zip(columns, warehouse.WINDOW_PROGRESS)],
        schema=warehouse.WINDOW_PROGRESS))  # fmt: skip


def _confirm_unseen(
    run: Run,
    plan: WalkPlan,
    batcher: Batcher,
    lander: LandingThread,
    target: Target,
    totals: Totals,
    mark_after: datetime,
) -> SyncSummary:
    """After a complete reconcile walk: ask for the live calls it did not see by id; delete those
    Close positively does not have, land the others; commit the run."""
    unseen = warehouse.unseen_live_calls(run.con, plan.run_id, plan.windows[0][0],
                                         plan.windows[-1][1])  # fmt: skip
    answers, landed = fetch_and_land_by_ids(run, unseen, batcher, lander, target)
    totals += landed + _sum(lander.wait())
    deleted = dict.fromkeys(answers.missing(unseen), plan.started_at)
    drift_deleted = 0
    if deleted and run.mark_before is not None:
        since = run.mark_before - run.options.event_overlap
        explained = {event.get("object_id") for event in run.client.iter_events("deleted", since)}
        drift_deleted = len(deleted.keys() - explained)
    log.info("reconcile: %d live calls not seen by the walk, %d returned by id, %d deleted",
             len(unseen), len(unseen) - len(deleted), len(deleted))  # fmt: skip
    _refuse_mass_delete(run, len(deleted))
    final = FinalCommit(
        run.summary(totals, mark_after, run.mark_before is not None),
        deleted=deleted,
        drift_deleted=drift_deleted,
        clear_walk=True,
    )
    _, (_, summary) = lander.run(land, run.con, batcher.rest(), target, final, run.stage)
    if summary.drift_calls:
        log.warning("reconcile found drift: %d calls the incremental sync had missed",
                    summary.drift_calls)  # fmt: skip
    return summary
