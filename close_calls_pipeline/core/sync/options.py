"""What a sync is asked to do (`SyncOptions`) and what it did (`SyncSummary`, `Totals`)."""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import datetime, timedelta

from close_calls_pipeline.core import config, warehouse
from close_calls_pipeline.core.personal_data import PersonalDataPolicy

EVENT_RETENTION = timedelta(days=30)
# The mark never passes the server's clock minus this: Close advises re-reading the last five
# minutes of the Event Log, as events can appear late or be consolidated.
MARK_LAG = timedelta(minutes=5)


@dataclass
class SyncOptions:
    backfill_start: datetime | None = None  # None: all history
    reconcile: bool = False  # force a full date_created walk
    workers: int = config.DEFAULT_WORKERS  # concurrent requests
    # Calls per landing transaction, or this much call text, whichever comes first: bounds
    # memory. A full batch is one DuckDB row group, which DuckDB writes straight to the file.
    batch_size: int = warehouse.ROW_GROUP_SIZE
    batch_bytes: int = 32 << 20
    window_count: int = 16  # date_created windows a walk is split into (each wastes ~half a page)
    # See config.DEFAULT_EVENT_OVERLAP_MINUTES (the `event_overlap_minutes` setting).
    event_overlap_minutes: float = config.DEFAULT_EVENT_OVERLAP_MINUTES
    # A reconcile that would soft-delete more than this share of the live calls stops before
    # deleting anything (`MassDeleteError`), unless `allow_mass_delete`.
    max_delete_share: float = config.DEFAULT_MAX_RECONCILE_DELETE_SHARE
    allow_mass_delete: bool = False
    # What the warehouse keeps of calls' personal data (docs/privacy.md), and the key of
    # `phone_numbers: hash` (read from CLOSE_CALLS_HASH_KEY by the Dagster component and the CLI).
    personal_data: PersonalDataPolicy = field(default_factory=PersonalDataPolicy)
    hash_key: bytes | None = field(default=None, repr=False)

    @property
    def event_overlap(self) -> timedelta:
        return timedelta(minutes=self.event_overlap_minutes)

    def __post_init__(self) -> None:
        if not 0 <= self.event_overlap_minutes <= config.MAX_EVENT_OVERLAP_MINUTES:
            raise ValueError(
                f"event_overlap_minutes must be between 0 and {config.MAX_EVENT_OVERLAP_MINUTES}"
            )
        config.parse_delete_share(self.max_delete_share)


class MassDeleteError(RuntimeError):
    """A reconcile stopped before soft-deleting more than the allowed share of the live calls."""


@dataclass(frozen=True)
class Totals:
    """What a run (or a walk, over the processes it took) landed."""

    calls_inserted: int = 0  # ids new to close.calls
    calls_updated: int = 0  # ids already there (from an earlier run) whose payload changed
    calls_deleted: int = 0  # live calls soft-deleted
    utterances_written: int = 0
    records_rejected: int = 0  # quarantined in close.rejected_records
    records_repaired: int = 0  # landed with a lone surrogate escape replaced by U+FFFD
    drift_calls: int = 0  # reconcile: calls it changed that the incremental should have

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @classmethod
    def of(cls, values: dict[str, int]) -> Totals:
        return cls(**{f.name: values.get(f.name, 0) for f in fields(cls)})


@dataclass
class SyncSummary:
    """What a run committed: also its close.sync_state row. The landed counts of a walk include
    what an interrupted earlier attempt of the same walk landed; requests, 429s, retries and
    seconds waited are this process's."""

    run_id: str
    mode: str  # backfill | incremental | reconcile
    started_at: datetime
    finished_at: datetime | None = None
    high_water_mark_before: datetime | None = None
    high_water_mark_after: datetime | None = None
    calls_inserted: int = 0
    calls_updated: int = 0
    calls_deleted: int = 0
    utterances_written: int = 0
    records_rejected: int = 0
    records_repaired: int = 0
    # Reconcile only (None otherwise): calls the walk inserted, updated or deleted whose change
    # in Close is older than the re-scan of the previous mark, i.e. that the incremental missed.
    drift_calls: int | None = None
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    seconds_waited: float = 0.0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)
