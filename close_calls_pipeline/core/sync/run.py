"""What one sync run carries everywhere: connection, client, options, clocks, and its hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb

from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.personal_data import CallPolice
from close_calls_pipeline.core.sync.options import SyncOptions, SyncSummary, Totals

StageHook = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    con: duckdb.DuckDBPyConnection
    client: CloseClient
    options: SyncOptions
    run_id: str
    mode: str
    server_now: datetime  # the server's clock when the run started (its Date header)
    started_at: datetime  # this machine's clock when the run started
    mark_before: datetime | None
    counters_at_start: dict
    on_stage: StageHook
    police: CallPolice  # the personal_data policy, applied to every call before it is typed

    def stage(self, name: str) -> None:
        """A named point ("page", "landed", "state", "committed") where tests inject failures."""
        self.on_stage(name)

    def summary(self, totals: Totals, mark_after: datetime | None, drift: bool) -> SyncSummary:
        """The run's summary from what it landed so far and the client's counters; drift is
        reported only by the runs that measure it (a reconcile)."""
        counters = self.client.counters.snapshot()
        start = self.counters_at_start
        finished = datetime.now(UTC)
        landed = {k: v for k, v in asdict(totals).items() if k != "drift_calls"}
        return SyncSummary(
            run_id=self.run_id,
            mode=self.mode,
            started_at=self.started_at,
            finished_at=finished,
            high_water_mark_before=self.mark_before,
            high_water_mark_after=mark_after,
            drift_calls=totals.drift_calls if drift else None,
            requests=counters["requests"] - start["requests"],
            rate_limited=counters["rate_limited"] - start["rate_limited"],
            retries=counters["retries"] - start["retries"],
            seconds_waited=counters["seconds_waited"] - start["seconds_waited"],
            duration_seconds=(finished - self.started_at).total_seconds(),
            **landed,
        )
