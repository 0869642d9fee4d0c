"""`close-calls bench --scenario lake`: the two storage modes side by side, against one sandbox.

Each mode gets the same calls: the DuckDB file (readers use its read-only copy) and a DuckLake
with a SQLite catalog and a local data folder (readers attach it read-only). For each mode:

1. **backfill** of the sandbox's calls, in a fresh process (its wall time, calls/s and peak RSS),
   while a second process reads in a loop (the copy in file mode, reconnecting each read as a
   notebook must to see a new copy; the lake on one read-only connection, which sees each
   commit): reads, median/p99/max latency and failures (an error, or a call id seen twice);
   then the size on disk (the file, or the catalog and the data folder, with its file count);
2. a run with **no change**, and one with **1% of the calls changed**, each in a fresh process;
3. **24 hourly runs** (each a few new, updated and deleted calls), then the lake's maintenance
   (`core/lake_maintenance.maintain` with no retention and no grace) and its figures.

Both modes end with the same calls (`Outcome.live_fingerprint`). Printed, never asserted.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import duckdb

from close_calls_pipeline.bench.processes import SandboxProcess, run_sync_in_process
from close_calls_pipeline.core import config, warehouse
from close_calls_pipeline.core.lake import Lake, connect_lake
from close_calls_pipeline.core.lake_maintenance import lake_files, maintain
from close_calls_pipeline.core.publish import publish_readonly_copy

# What a reader asks: the live calls and any id seen twice (a duplicate must never be visible).
_READ = (
    "SELECT count(*) FILTER (_deleted_at IS NULL), count(*) - count(DISTINCT id) FROM close.calls"
)
# The live calls as a value both modes must share once they have synced the same changes.
_LIVE_FINGERPRINT = (
    "SELECT count(*), coalesce(bit_xor(hash(id, date_updated)), 0) "
    "FROM close.calls WHERE _deleted_at IS NULL"
)


# --- the reader: a process of its own, reading in a loop until told to stop ----------------------


@dataclass
class ReaderFigures:
    reads: int = 0
    failures: int = 0  # errors and reads that saw a call id twice
    latencies: list[float] = field(default_factory=list, repr=False)
    first_failure: str = ""
    most_calls_seen: int = 0

    def quantile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]

    def line(self) -> str:
        failure = f" (first: {self.first_failure})" if self.first_failure else ""
        return (
            f"{self.reads:,} reads, median {self.quantile(0.5) * 1000:.0f} ms, "
            f"p99 {self.quantile(0.99) * 1000:.0f} ms, max {self.quantile(1.0) * 1000:.0f} ms, "
            f"{self.failures} failures{failure}; saw up to {self.most_calls_seen:,} live calls"
        )


def _read_copy(copy: str) -> tuple[int, int]:
    con = duckdb.connect(copy, read_only=True)
    try:
        return con.execute(_READ).fetchone()
    finally:
        con.close()


def _reader_process(conn, target: str | Lake, pause: float) -> None:
    figures = ReaderFigures()
    lake_con = connect_lake(target, read_only=True) if isinstance(target, Lake) else None
    conn.send("ready")
    while not conn.poll(pause):
        started = time.perf_counter()
        try:
            if lake_con is not None:
                live, repeated = lake_con.execute(_READ).fetchone()
            else:
                live, repeated = _read_copy(target)
        except Exception as error:  # noqa: BLE001 - counted: what the benchmark reports
            live, repeated = 0, 0
            figures.failures += 1
            figures.first_failure = figures.first_failure or f"{type(error).__name__}: {error}"
        else:
            if repeated:
                figures.failures += 1
                figures.first_failure = figures.first_failure or f"{repeated} ids seen twice"
        figures.latencies.append(time.perf_counter() - started)
        figures.reads += 1
        figures.most_calls_seen = max(figures.most_calls_seen, live)
    if lake_con is not None:
        lake_con.close()
    conn.send(figures)


class Reader:
    """A reader process: started, it reads until `stop()` returns its figures."""

    def __init__(self, target: str | Lake, pause: float = 0.02):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_reader_process, args=(child, target, pause))
        self._process.start()
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            raise RuntimeError("the reader process did not start")

    def stop(self) -> ReaderFigures:
        self._conn.send("stop")
        figures = self._conn.recv()
        self._process.join(30)
        return figures


# --- sizes on disk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskUse:
    files: int
    bytes: int
    catalog_bytes: int = 0  # a lake's catalog file (with its WAL); 0 for a DuckDB file

    def line(self) -> str:
        catalog = f" + catalog {self.catalog_bytes / 1e6:,.1f} MB" if self.catalog_bytes else ""
        return f"{self.files:,} files, {self.bytes / 1e6:,.1f} MB{catalog}"


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def disk_use(target: str | Lake) -> DiskUse:
    """The warehouse file and its WAL; or the lake's data folder (files, bytes) and catalog."""
    if isinstance(target, Lake):
        data = _files_under(Path(target.data_path))
        catalog = Path(target.catalog.removeprefix("sqlite:"))
        catalog_files = [p for p in catalog.parent.glob(catalog.name + "*") if p.is_file()]
        return DiskUse(
            len(data),
            sum(p.stat().st_size for p in data),
            sum(p.stat().st_size for p in catalog_files),
        )
    present = [p for p in (Path(target), Path(f"{target}.wal")) if p.exists()]
    return DiskUse(len(present), sum(p.stat().st_size for p in present))


# --- one mode --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mode: str
    backfill_calls: int = 0
    backfill_seconds: float = 0.0
    backfill_peak_rss_mb: float = 0.0
    publish_seconds: float = 0.0  # file mode: the read-only copy after the backfill
    reader: ReaderFigures | None = None
    after_backfill: DiskUse | None = None
    no_change_seconds: float = 0.0
    changed_calls: int = 0
    changed_seconds: float = 0.0
    hourly_runs: int = 0
    hourly_seconds: float = 0.0  # all the hourly runs' syncs
    failed_hourly_runs: int = 0
    first_hourly_failure: str = ""
    after_hourly: DiskUse | None = None
    lake_before_maintenance: tuple[int, int, int] | None = None  # files, bytes, snapshots
    lake_after_maintenance: tuple[int, int, int] | None = None
    after_maintenance: DiskUse | None = None
    maintenance_seconds: float = 0.0
    live_fingerprint: tuple[int, int] = (0, 0)  # live calls, and a hash of their ids and versions

    def _say(self, text: str) -> None:
        print(f"  {self.mode:<4} {text}", flush=True)

    def print_backfill(self) -> None:
        rate = self.backfill_calls / self.backfill_seconds if self.backfill_seconds else 0.0
        publish = f"; copy published in {self.publish_seconds:.2f} s" if self.mode == "file" else ""
        self._say(
            f"backfill {self.backfill_calls:,} calls in {self.backfill_seconds:.1f} s "
            f"({rate:,.0f} calls/s), peak RSS {self.backfill_peak_rss_mb:,.0f} MB; "
            f"on disk {self.after_backfill.line()}{publish}"
        )
        read = "the read-only copy, reconnecting" if self.mode == "file" else "the lake, attached"
        self._say(f"reader ({read}) during the backfill: {self.reader.line()}")

    def print_runs(self) -> None:
        self._say(
            f"no change: sync {self.no_change_seconds:.1f} s; {self.changed_calls:,} calls "
            f"changed (1%): sync {self.changed_seconds:.1f} s"
        )

    def print_hourly(self) -> None:
        self._say(
            f"{self.hourly_runs} hourly runs ({self.hourly_seconds:.1f} s of syncs): "
            f"on disk {self.after_hourly.line()}"
        )
        if self.failed_hourly_runs:
            self._say(
                f"{self.failed_hourly_runs} hourly runs FAILED (first: {self.first_hourly_failure})"
            )
        if self.lake_after_maintenance is not None:
            before, after = self.lake_before_maintenance, self.lake_after_maintenance
            self._say(
                f"maintenance in {self.maintenance_seconds:.2f} s: catalog's files {before[0]} -> "
                f"{after[0]}, {before[1] / 1e6:,.1f} -> {after[1] / 1e6:,.1f} MB tracked, "
                f"snapshots {before[2]} -> {after[2]}; on disk {self.after_maintenance.line()}"
            )


def _lake_state(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    files = lake_files(con)
    return files.files, files.tracked_bytes, files.snapshots


def _live_fingerprint(target: str | Lake) -> tuple[int, int]:
    con = warehouse.connect(target)
    try:
        count, digest = con.execute(_LIVE_FINGERPRINT).fetchone()
        return int(count), int(digest)
    finally:
        con.close()


def backfill(
    sandbox: SandboxProcess, target: str | Lake, outcome: Outcome, workers: int, memory_limit: str
) -> None:
    """The backfill in a fresh process while a reader reads; in file mode the copy the reader
    opens exists from the start (the empty warehouse's) and is published again at the end."""
    warehouse.connect(target).close()  # the schema is there before the reader's first look
    if isinstance(target, Lake):
        reader = Reader(target)
    else:
        publish_readonly_copy(target)
        reader = Reader(str(config.readonly_copy_path(target)))
    try:
        summary, seconds, rss = run_sync_in_process(sandbox.base_url, target, workers, memory_limit)
        if not isinstance(target, Lake):
            outcome.publish_seconds = publish_readonly_copy(target).seconds
    finally:
        outcome.reader = reader.stop()
    outcome.backfill_calls = summary["calls_inserted"]
    outcome.backfill_seconds, outcome.backfill_peak_rss_mb = seconds, rss
    outcome.after_backfill = disk_use(target)


def hourly_runs(
    sandbox: SandboxProcess,
    targets: dict[str, str | Lake],
    outcomes: dict[str, Outcome],
    runs: int,
    changes: int,
    workers: int,
    memory_limit: str,
) -> None:
    """Runs of the sync an hour apart, each after a few calls were created, updated and deleted;
    each in a fresh process, as a scheduled run is (a failed one rolls back; the next retries)."""
    rng = random.Random(7)
    for hour in range(runs):
        sandbox.call(
            "mutate",
            {
                "seed": rng.randrange(1 << 30),
                "new": changes // 10,
                "updated": changes * 8 // 10,
                "deleted": changes // 10,
                "advance": 3600,
            },
        )
        for mode, target in targets.items():
            outcome = outcomes[mode]
            started = time.perf_counter()
            try:
                run_sync_in_process(sandbox.base_url, target, workers, memory_limit)
            except RuntimeError as error:  # the child printed its traceback
                outcome.failed_hourly_runs += 1
                outcome.first_hourly_failure = outcome.first_hourly_failure or str(error)
                print(f"  {mode:<4} hourly run {hour + 1} FAILED: {error}", flush=True)
            outcome.hourly_seconds += time.perf_counter() - started
            outcome.hourly_runs += 1


def maintain_lake(lake: Lake, outcome: Outcome) -> None:
    """As `close-calls maintain` runs it: its own connection, DuckDB's default memory limit."""
    con = connect_lake(lake)
    try:
        outcome.lake_before_maintenance = _lake_state(con)
        started = time.perf_counter()
        maintain(con, retention_days=0, file_grace=timedelta(0))
        outcome.maintenance_seconds = time.perf_counter() - started
        outcome.lake_after_maintenance = _lake_state(con)
    finally:
        con.close()
    outcome.after_maintenance = disk_use(lake)


def storage_modes(
    calls: int,
    workers: int = config.DEFAULT_WORKERS,
    hourly: int = 24,
    changes_per_hour: int = 200,
    memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> dict[str, Outcome]:
    """Every figure of both modes, printed as it comes, in a temporary folder; `memory_limit`:
    DuckDB's in each sync (the pipeline's `duckdb_memory_limit`)."""
    print(
        f"storage modes: the DuckDB file and a DuckLake (SQLite catalog, local folder), {calls:,} calls:",
        flush=True,
    )
    started_load = os.getloadavg()
    sandbox = SandboxProcess(calls)
    print(f"  sandbox with {calls:,} calls built in {sandbox.build_seconds:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        root = Path(tmp_dir)
        targets: dict[str, str | Lake] = {
            "file": str(root / "file" / "close_calls.duckdb"),
            "lake": Lake(f"sqlite:{root / 'lake' / 'catalog.sqlite'}", str(root / "lake" / "data")),
        }
        outcomes = {mode: Outcome(mode) for mode in targets}
        try:
            for mode, target in targets.items():
                backfill(sandbox, target, outcomes[mode], workers, memory_limit)
                outcomes[mode].print_backfill()
            for mode, target in targets.items():
                _, outcomes[mode].no_change_seconds, _ = run_sync_in_process(
                    sandbox.base_url, target, workers, memory_limit
                )
            changed = sandbox.call("update_share", 0.01)
            for mode, target in targets.items():
                outcomes[mode].changed_calls = changed
                _, outcomes[mode].changed_seconds, _ = run_sync_in_process(
                    sandbox.base_url, target, workers, memory_limit
                )
                outcomes[mode].print_runs()
            hourly_runs(sandbox, targets, outcomes, hourly, changes_per_hour, workers, memory_limit)
            for mode, target in targets.items():
                outcomes[mode].after_hourly = disk_use(target)
                outcomes[mode].live_fingerprint = _live_fingerprint(target)
            maintain_lake(targets["lake"], outcomes["lake"])
        finally:
            sandbox.stop()
    for outcome in outcomes.values():
        outcome.print_hourly()
    same = outcomes["file"].live_fingerprint == outcomes["lake"].live_fingerprint
    print(
        f"  both modes end with {outcomes['lake'].live_fingerprint[0]:,} live calls"
        + (
            ", the same ones"
            if same
            else f" (file: {outcomes['file'].live_fingerprint[0]:,}): THEY DIFFER"
        ),
        flush=True,
    )
    load = ", ".join(
        f"{a:.1f} -> {b:.1f}" for a, b in zip(started_load, os.getloadavg(), strict=True)
    )
    print(f"  (load average 1/5/15 min, start -> end: {load}; {os.cpu_count()} CPUs)", flush=True)
    return outcomes
