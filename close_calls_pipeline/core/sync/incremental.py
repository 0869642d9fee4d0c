"""The incremental run: the Event Log since the high-water mark, minus an overlap.

Created and updated calls are fetched by id (with their transcripts) and upserted; deleted ones
are soft-deleted, and so are calls asked for by id that a clean answer lacks (deleted since
their event). Events are re-read over `event_overlap_minutes` before the mark, because Close
writes some late; the ones an earlier run applied are skipped, so the overlap costs pages of the
Event Log, not fetches. The mark advances to the newest event read, never past the server's
clock minus five minutes, never backwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient, Unreadable
from close_calls_pipeline.core.records import RecordError, Rejection, to_timestamp
from close_calls_pipeline.core.sync.batches import Batcher
from close_calls_pipeline.core.sync.by_id import fetch_and_land_by_ids
from close_calls_pipeline.core.sync.landing import FinalCommit, LandingThread, Target, land
from close_calls_pipeline.core.sync.options import MARK_LAG, SyncSummary
from close_calls_pipeline.core.sync.run import Run

log = logging.getLogger(__name__)

EVENT_ACTIONS = ("created", "updated", "deleted")


@dataclass
class Changes:
    """What the Event Log says changed since a time."""

    changed: list[str] = field(default_factory=list)  # created or updated, not deleted
    deleted: dict[str, datetime] = field(default_factory=dict)  # id -> when Close deleted it
    newest: datetime | None = None  # the newest event's date_updated
    # Events applied by this run once it commits: (id, date_updated as written, parsed).
    applied: list[tuple[str, str, datetime]] = field(default_factory=list)
    skipped: int = 0  # events an earlier run applied
    unreadable: list[Rejection] = field(default_factory=list)  # events that do not parse


def _timestamp(value: object) -> datetime | None:
    try:
        return to_timestamp(value)
    except RecordError:
        return None


def read_changes(
    client: CloseClient, since: datetime, applied_before: set[tuple[str, str]]
) -> Changes:
    """Calls created, updated and deleted according to the events since `since`, less the events
    in `applied_before` (id, date_updated as written): an event consolidated since it was applied
    has moved its date_updated, and counts again."""
    changes, changed, seen = Changes(), {}, set()
    for action in EVENT_ACTIONS:
        for event in client.iter_events(action, since):
            if isinstance(event, Unreadable):
                changes.unreadable.append(
                    Rejection.unreadable(event.raw, "Event Log entry is not valid JSON", "ev_")
                )
            event_id, written = event.get("id"), event.get("date_updated")
            if event_id in seen:
                continue
            seen.add(event_id)
            updated = _timestamp(written)
            if updated is not None and (changes.newest is None or updated > changes.newest):
                changes.newest = updated
            if (event_id, written) in applied_before:
                changes.skipped += 1
                continue
            if isinstance(event_id, str) and isinstance(written, str) and updated is not None:
                changes.applied.append((event_id, written, updated))
            object_id = event.get("object_id")
            if not isinstance(object_id, str) or not object_id:
                continue
            if action == "deleted":
                when = max(filter(None, [changes.deleted.get(object_id), updated or since]))
                changes.deleted[object_id] = when
            else:
                changed[object_id] = None
    changes.changed = [i for i in changed if i not in changes.deleted]
    return changes


def incremental(run: Run, mark: datetime) -> SyncSummary:
    """Apply the Event Log since `mark` minus the overlap; returns what the run committed."""
    since = mark - run.options.event_overlap
    changes = read_changes(run.client, since, warehouse.applied_events(run.con))
    log.info("event log since %s: %d calls created/updated, %d deleted (%d events applied "
             "before, %d unreadable)", since, len(changes.changed), len(changes.deleted),
             changes.skipped, len(changes.unreadable))  # fmt: skip
    cap = run.server_now - MARK_LAG
    mark_after = max(mark, min(changes.newest, cap) if changes.newest else cap)
    target = Target(run.run_id, own_since=run.started_at)
    batcher = Batcher(run.options.batch_size, run.options.batch_bytes, run.police)
    with LandingThread() as lander:
        answers, totals = fetch_and_land_by_ids(run, changes.changed, batcher, lander, target)
        for landed, _ in lander.wait():
            totals += landed
        deleted = dict(changes.deleted)
        for call_id in answers.missing(changes.changed):  # deleted since their event
            deleted.setdefault(call_id, run.server_now)
        if answers.unproven - answers.returned:
            log.warning("%d calls asked for by id were not returned next to a record without a "
                        "readable id: not taken as deleted",
                        len(answers.unproven - answers.returned))  # fmt: skip
        final = FinalCommit(
            run.summary(totals, mark_after, False),
            deleted=deleted,
            rejected=[("event", run.police.rejection(r)) for r in changes.unreadable],
            applied_events=changes.applied,
            keep_events_from=mark_after - run.options.event_overlap,
        )
        _, (_, summary) = lander.run(land, run.con, batcher.rest(), target, final, run.stage)
    return summary
