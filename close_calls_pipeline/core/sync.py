"""The sync: Close calls into DuckDB, incrementally by `date_updated`.

Close has no `date_updated` filter on calls, so the Event Log is the change feed:

* **walk** (first run, a stale cursor, or on request): every call by half-open `date_created`
  windows fetched concurrently; when it completes, live rows it did not see are marked deleted.
  The plan is stored, and each window is marked done with its last rows, so an interrupted walk
  resumes where it stopped.
* **incremental**: `activity.call` events since the high-water mark minus a five-minute re-scan;
  created and updated calls are re-fetched by id (with transcripts), deleted ones soft-deleted.

Data and the state that describes it are committed in one DuckDB transaction, so a crash at any
point loses nothing, and any re-run is idempotent. Orchestrator-free: Dagster and the CLI call
`sync_calls` and `refresh_reference_tables`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Self, TypeVar

import duckdb
import pyarrow as pa

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.records import (
    OUTCOMES_COLUMNS,
    USERS_COLUMNS,
    RecordError,
    TypedCalls,
    to_timestamp,
    type_calls,
    type_reference,
)

log = logging.getLogger(__name__)

RESCAN = timedelta(minutes=5)
EVENT_RETENTION = timedelta(days=30)
EARLIEST_SEARCH_FROM = datetime(2000, 1, 1, tzinfo=UTC)
EVENT_ACTIONS = ("created", "updated", "deleted")

TYPING_STEP, TYPING_STEP_BYTES = 2_048, 8 << 20  # calls typed at a time (or this much text)
StageHook = Callable[[str], None]
Task = TypeVar("Task")


@dataclass
class SyncOptions:
    backfill_start: datetime | None = None  # None: all history
    reconcile: bool = False  # force a full date_created walk
    workers: int = 8  # concurrent requests; enough that the rate limit, not latency, is the ceiling
    # Calls per landing transaction, or this much call text, whichever comes first: bounds
    # memory. A full batch is one DuckDB row group, which DuckDB writes straight to the file.
    batch_size: int = warehouse.ROW_GROUP_SIZE
    batch_bytes: int = 32 << 20
    window_count: int = 16  # date_created windows a walk is split into (each wastes ~half a page)


@dataclass
class SyncSummary:
    run_id: str
    mode: str
    started_at: datetime
    finished_at: datetime | None = None
    high_water_mark_before: datetime | None = None
    high_water_mark_after: datetime | None = None
    calls_inserted: int = 0
    calls_updated: int = 0
    calls_deleted: int = 0
    utterances_written: int = 0
    records_rejected: int = 0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    seconds_waited: float = 0.0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Run:
    """What one sync run needs everywhere: connection, client, options, clock and running totals."""

    con: duckdb.DuckDBPyConnection
    client: CloseClient
    options: SyncOptions
    summary: SyncSummary
    server_now: datetime
    on_stage: StageHook
    counters_at_start: dict = field(default_factory=dict)

    def stage(self, name: str) -> None:
        self.on_stage(name)

    def finish(self, mark_after: datetime | None) -> dict:
        """Fill the summary's closing figures; returns the row for close.sync_state."""
        counters = self.client.counters.snapshot()
        s = self.summary
        s.requests = counters["requests"] - self.counters_at_start["requests"]
        s.retries = counters["retries"] - self.counters_at_start["retries"]
        s.rate_limited = counters["rate_limited"] - self.counters_at_start["rate_limited"]
        s.seconds_waited = counters["seconds_waited"] - self.counters_at_start["seconds_waited"]
        s.high_water_mark_after = mark_after
        s.finished_at = datetime.now(UTC)
        s.duration_seconds = (s.finished_at - s.started_at).total_seconds()
        return s.as_dict()


def sync_calls(
    client: CloseClient,
    con: duckdb.DuckDBPyConnection,
    options: SyncOptions | None = None,
    *,
    on_stage: StageHook | None = None,
) -> SyncSummary:
    """Bring `close.calls` and its utterances up to date with Close; returns what the run did.

    `on_stage(name)` is called at named points ("page", "landed", "state") so tests can inject a
    failure anywhere; it is a no-op in production.
    """
    options = options or SyncOptions()
    counters_at_start = client.counters.snapshot()
    client.me()  # fails fast on a bad key, and reads the server's clock
    server_now = client.server_now() or datetime.now(UTC)
    mark = warehouse.high_water_mark(con)
    plan = warehouse.load_walk_plan(con)

    if plan is not None:
        mode = plan.mode
    elif options.reconcile or mark is None or mark - RESCAN < server_now - EVENT_RETENTION:
        (rows,) = con.execute("SELECT count(*) FROM close.calls").fetchall()[0]
        mode = "reconcile" if rows else "backfill"
    else:
        mode = "incremental"

    summary = SyncSummary(
        run_id=plan.run_id if plan else uuid.uuid4().hex,
        mode=mode,
        started_at=datetime.now(UTC),
        high_water_mark_before=mark,
    )
    run = _Run(con, client, options, summary, server_now, on_stage or (lambda _: None),
               counters_at_start)
    log.info("sync %s starting: mode=%s, high-water mark=%s, server time=%s",
             summary.run_id, mode, mark, server_now)
    with _arrow_on_system_malloc():
        if mode == "incremental":
            _incremental(run, mark)
        else:
            _walk(run, plan, mark)
    log.info(
        "sync %s done: %d inserted, %d updated, %d deleted, %d utterances, %d rejected, "
        "%d requests (%d answered 429, %d retries, %.1f s waited), mark %s -> %s",
        summary.run_id, summary.calls_inserted, summary.calls_updated, summary.calls_deleted,
        summary.utterances_written, summary.records_rejected, summary.requests,
        summary.rate_limited, summary.retries, summary.seconds_waited,
        summary.high_water_mark_before, summary.high_water_mark_after,
    )
    return summary


@contextmanager
def _arrow_on_system_malloc() -> Iterator[None]:
    """Arrow's default allocator (mimalloc) keeps freed batch memory mapped for reuse: measured,
    ~75 MB more peak RSS in a backfill than the system allocator, at no measurable speed cost."""
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(pool)


# --- landing in batches ---------------------------------------------------------------------------


class _Batcher:
    """Collects fetched calls (JSON text as received) and lands them in one transaction per batch.

    Calls are typed as they arrive, a typing step at a time (mostly Arrow's JSON reader, which
    releases the GIL), and a batch of typed calls is landed on a single landing thread (DuckDB,
    which releases it too), the only one that touches the connection while the batcher is open.
    Typing the next batch overlaps with landing this one; at most one batch is being landed at a
    time, which bounds memory. A full batch is exactly one DuckDB row group, so DuckDB writes it
    straight to the file, compressed, instead of to the WAL first and to the file again at the
    next checkpoint (measured: landing twice as fast). A call repeated within a batch lands once
    (the last copy wins); across batches, change detection in `warehouse.land_calls` makes a
    repeat a no-op, or, when `append_only` (a backfill into an empty table), the walk's finalize
    removes extra copies."""

    def __init__(self, run: _Run, *, track_seen: bool = False, returned: set[str] | None = None,
                 append_only: bool = False):
        self.run = run
        self.land = warehouse.append_calls if append_only else warehouse.land_calls
        self.track_seen = track_seen  # record ids in close.sync_seen_ids (a reconcile walk)
        self.returned = returned  # or collect them here (the few calls of an incremental run)
        self.typing_step = min(TYPING_STEP, run.options.batch_size)
        self.typing_step_bytes = min(TYPING_STEP_BYTES, run.options.batch_bytes)
        self.raw_calls: list[bytes] = []  # fetched, not yet typed
        self.raw_bytes = 0
        self.typed: list[TypedCalls] = []  # typed, not yet handed to the landing thread
        self.typed_count = self.typed_bytes = 0  # raw calls (and their text) in self.typed
        # Windows whose last page has been added. Their calls are all typed by the next flush:
        # less than a typing step is left untyped after each page, a step takes the oldest
        # calls first, and a flush always follows a step (or, finalizing, types everything).
        self.windows_done: list[tuple[datetime, datetime]] = []
        self.loaded_at = datetime.min.replace(tzinfo=UTC)
        self._lander = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-landing")
        self._landing: Future | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                self._wait()
        finally:
            self._lander.shutdown(wait=True)

    def add_page(self, page: list[bytes]) -> None:
        self.raw_calls += page
        self.raw_bytes += sum(map(len, page))
        self.run.stage("page")
        while len(self.raw_calls) >= self.typing_step or self.raw_bytes >= self.typing_step_bytes:
            self._type()
        options = self.run.options
        if self.typed_count >= options.batch_size or self.typed_bytes >= options.batch_bytes:
            self.flush()

    def _type(self) -> None:
        """Type the oldest calls, a step's worth."""
        # Each typing step gets its own, later _loaded_at: the copies of a repeated call are
        # told apart by it (see TypedCalls.concat and remove_duplicate_calls.sql).
        self.loaded_at = max(datetime.now(UTC), self.loaded_at + timedelta(microseconds=1))
        raw = self.raw_calls[:self.typing_step]
        del self.raw_calls[:self.typing_step]
        size = sum(map(len, raw))
        self.typed.append(type_calls(raw, self.loaded_at))
        self.raw_bytes -= size
        self.typed_count += len(raw)
        self.typed_bytes += size

    def flush(self, finalize: Callable[[], None] | None = None) -> None:
        """Hand what is typed to the landing thread (with everything fetched, when finalizing);
        `finalize` (the state commit) runs in the same transaction, and then the call waits."""
        if finalize:
            while self.raw_calls:
                self._type()
        typed = TypedCalls.concat(self.typed or [type_calls([], self.loaded_at)])
        windows = self.windows_done
        self.typed, self.typed_count, self.typed_bytes, self.windows_done = [], 0, 0, []
        ids = typed.ids() if self.track_seen or self.returned is not None else []
        if self.returned is not None:
            self.returned.update(ids)
        seen = ids if self.track_seen else []
        self._wait()
        self._landing = self._lander.submit(self._land, typed, seen, windows, self.loaded_at,
                                            finalize)
        if finalize:
            self._wait()

    def _wait(self) -> None:
        if self._landing is not None:
            landing, self._landing = self._landing, None
            landing.result()

    def _land(self, typed, seen: list[str], windows: list, now: datetime,
              finalize: Callable[[], None] | None) -> None:
        run, s = self.run, self.run.summary
        with warehouse.transaction(run.con):
            counts = self.land(run.con, typed.calls, typed.utterances)
            warehouse.record_rejections(run.con, s.run_id, "call", typed.rejected, now)
            warehouse.record_seen_ids(run.con, s.run_id, seen)
            warehouse.mark_windows_done(run.con, windows)
            run.stage("landed")
            s.calls_inserted += counts.inserted
            s.calls_updated += counts.updated
            s.utterances_written += counts.utterances
            s.records_rejected += len(typed.rejected)
            if finalize:
                finalize()
            run.stage("state")
        if typed.rejected:
            log.warning("%d records rejected into close.rejected_records (first: %s)",
                        len(typed.rejected), typed.rejected[0].reason)
        if typed.calls.num_rows:
            log.info("landed %d calls: %d new, %d changed so far", typed.calls.num_rows,
                     s.calls_inserted, s.calls_updated)


def _fetch_concurrently(
    tasks: list[Task], fetch: Callable[[Task], Iterable[list]], workers: int
) -> Iterator[tuple[Task, list | None]]:
    """Run `fetch(task)` for every task on a bounded pool; yield (task, page) as pages arrive
    and (task, None) once a task is complete. Memory stays bounded by a small page queue."""
    pages: queue.Queue = queue.Queue(maxsize=max(2, workers * 2))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(task: Task) -> None:
        if stop.is_set():
            return
        try:
            for page in fetch(task):
                if not put((task, page, None)):
                    return
            put((task, None, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put((task, None, error))

    remaining = len(tasks)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="close-fetch")
    try:
        for task in tasks:
            pool.submit(work, task)
        while remaining:
            task, page, error = pages.get()
            if error is not None:
                raise error
            if page is None:
                remaining -= 1
            yield task, page
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


# --- walk: backfill and reconcile -----------------------------------------------------------------


def split_range(start: datetime, end: datetime, count: int) -> list[tuple[datetime, datetime]]:
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


def _oldest_known_call(run: _Run) -> datetime:
    """Where a walk over all history starts: the oldest call in Close or in the warehouse (so that
    a reconcile also covers calls deleted from the oldest end)."""
    oldest_in_close = earliest_call_time(run.client, run.server_now)
    (oldest_here,) = run.con.execute(
        "SELECT min(date_created) FROM close.calls WHERE _deleted_at IS NULL").fetchall()[0]
    return min(filter(None, [oldest_in_close, oldest_here]))


def _walk(run: _Run, plan: warehouse.WalkPlan | None, mark_before: datetime | None) -> None:
    con, s = run.con, run.summary
    if plan is None:
        start = run.options.backfill_start or _oldest_known_call(run)
        end = run.server_now + timedelta(seconds=1)
        windows = split_range(start, end, run.options.window_count)
        plan = warehouse.WalkPlan(s.run_id, s.mode, run.server_now, run.server_now - RESCAN,
                                  windows, windows)
        with warehouse.transaction(con):
            warehouse.save_walk_plan(con, plan)
        log.info("walking %d date_created windows from %s to %s", len(windows), start, end)
    else:
        log.info("resuming walk %s: %d of %d windows left", plan.run_id, len(plan.pending),
                 len(plan.windows))

    mark_after = max(filter(None, [mark_before, plan.high_water_mark]))
    # A backfill starts from an empty table: it appends, and has nothing it could find deleted.
    reconciling = plan.mode == "reconcile"

    def finalize() -> None:
        if reconciling:
            s.calls_deleted += warehouse.mark_unseen_deleted(
                con, plan.run_id, plan.windows[0][0], plan.windows[-1][1], plan.started_at
            )
        else:
            removed = warehouse.remove_duplicate_calls(con)
            s.calls_inserted -= removed.inserted
            s.utterances_written -= removed.utterances
        warehouse.clear_walk_plan(con)
        warehouse.append_sync_state(con, run.finish(mark_after))

    done = len(plan.windows) - len(plan.pending)
    with _Batcher(run, track_seen=reconciling, append_only=not reconciling) as batcher:
        fetch = lambda window: run.client.iter_call_window(*window)
        for window, page in _fetch_concurrently(plan.pending, fetch, run.options.workers):
            if page is None:
                batcher.windows_done.append(window)
                done += 1
                log.debug("window %s done (%d/%d)", window, done, len(plan.windows))
            else:
                batcher.add_page(page)
        batcher.flush(finalize)


# --- incremental: the Event Log --------------------------------------------------------------------


def read_changes(
    client: CloseClient, since: datetime
) -> tuple[list[str], dict[str, datetime], datetime | None]:
    """Call ids created or updated, ids deleted (with when), and the newest event time since `since`."""
    changed: dict[str, None] = {}
    deleted: dict[str, datetime] = {}
    seen_events: set[str] = set()
    newest: datetime | None = None
    for action in EVENT_ACTIONS:
        for event in client.iter_events(action, since):
            if event.get("id") in seen_events:
                continue
            seen_events.add(event.get("id"))
            object_id = event.get("object_id")
            try:
                updated = to_timestamp(event.get("date_updated"))
            except RecordError:
                updated = None
            if updated is not None and (newest is None or updated > newest):
                newest = updated
            if not object_id:
                continue
            if action == "deleted":
                deleted[object_id] = max(filter(None, [deleted.get(object_id), updated or since]))
            else:
                changed[object_id] = None
    return [i for i in changed if i not in deleted], deleted, newest


def _incremental(run: _Run, mark: datetime) -> None:
    s = run.summary
    changed, deleted, newest = read_changes(run.client, mark - RESCAN)
    log.info("event log since %s: %d calls created/updated, %d deleted", mark - RESCAN,
             len(changed), len(deleted))

    cap = run.server_now - RESCAN
    returned: set[str] = set()
    mark_after = max(mark, min(newest, cap) if newest else cap)

    def finalize() -> None:
        # Asked for but not returned (the batcher has typed every page by now): deleted since
        # the event was written.
        for call_id in changed:
            if call_id not in returned:
                deleted.setdefault(call_id, run.server_now)
        s.calls_deleted += warehouse.mark_deleted(run.con, deleted) if deleted else 0
        warehouse.append_sync_state(run.con, run.finish(mark_after))

    chunks = [changed[i:i + 100] for i in range(0, len(changed), 100)]
    with _Batcher(run, returned=returned) as batcher:
        for _, page in _fetch_concurrently(chunks, run.client.iter_calls_by_ids, run.options.workers):
            if page is not None:
                batcher.add_page(page)
        batcher.flush(finalize)


# --- reference tables -----------------------------------------------------------------------------


def refresh_reference_tables(
    client: CloseClient, con: duckdb.DuckDBPyConnection, tables: Iterable[str] = ("outcomes", "users")
) -> dict[str, int]:
    """Replace `close.outcomes` / `close.users` with a fresh full copy; returns rows per table."""
    fetchers = {"outcomes": (client.list_outcomes, OUTCOMES_COLUMNS),
                "users": (client.list_users, USERS_COLUMNS)}
    run_id, counts = uuid.uuid4().hex, {}
    for name in tables:
        fetch, columns = fetchers[name]
        started = time.monotonic()
        now = datetime.now(UTC)
        rows, rejected = type_reference(fetch(), columns, now)
        with warehouse.transaction(con):
            warehouse.replace_table(con, name, rows)
            warehouse.record_rejections(con, run_id, name.rstrip("s"), rejected, now)
        counts[name] = rows.num_rows
        log.info("refreshed close.%s: %d rows (%d rejected) in %.2f s", name, rows.num_rows,
                 len(rejected), time.monotonic() - started)
    return counts
