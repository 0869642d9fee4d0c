"""`close-calls bench`: sync throughput, requests, 429s and peak memory against the sandbox.

The sandbox runs in its own process (so it does not share the sync's GIL) and each sync runs in a
fresh process (so its peak RSS is its own). Figures are printed, never asserted: the machines are
shared and noisy; the ratios to the ceiling measured in the same run are what to compare.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from close_calls_pipeline.bench.processes import API_KEY, SandboxProcess, run_sync_in_process
from close_calls_pipeline.core import config


def raw_pull_rate(base_url: str, workers: int) -> float:
    """Ceiling without a rate limit: calls/s the sandbox serves to bare clients (no landing)."""
    from close_calls_pipeline.bench.sandbox import pull_all

    pulled = pull_all(base_url, API_KEY, threads=workers)
    return pulled["calls"] / pulled["seconds"]


# --- scenarios -----------------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    calls: int
    seconds: float
    requests: int
    rate_limited: int
    retries: int
    peak_rss_mb: float
    ceiling: float | None = None
    cpu_seconds: float = 0.0  # of the sync process (imports included): steadier than wall time

    def line(self) -> str:
        rate = self.calls / self.seconds if self.seconds else 0.0
        share_429 = self.rate_limited / self.requests if self.requests else 0.0
        ratio = f"{rate / self.ceiling:6.1%} of {self.ceiling:,.0f}" if self.ceiling else "-"
        return (
            f"{self.name:<34} {self.calls:>8,} calls {self.seconds:7.1f} s {rate:9,.0f} calls/s "
            f"ceiling {ratio:<22} {self.requests:>6,} req {share_429:6.2%} 429 "
            f"{self.retries:>4} retries  peak RSS {self.peak_rss_mb:6.0f} MB  "
            f"CPU {self.cpu_seconds:5.1f} s"
        )


def backfill_and_incremental(
    name: str, calls: int, workers: int, change_share: float, ceiling: float | None, **server_kwargs
) -> list[Figures]:
    sandbox = SandboxProcess(calls, **server_kwargs)
    print(f"  sandbox with {calls:,} calls built in {sandbox.build_seconds:.1f} s", flush=True)
    try:
        if ceiling is None:
            ceiling = raw_pull_rate(sandbox.base_url, workers)
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "bench.duckdb")
            sandbox.call("reset_stats")
            summary, seconds, rss = run_sync_in_process(sandbox.base_url, db, workers)
            figures = [
                Figures(
                    f"{name}: backfill",
                    summary["calls_inserted"],
                    seconds,
                    summary["requests"],
                    summary["rate_limited"],
                    summary["retries"],
                    rss,
                    ceiling,
                    summary["cpu_seconds"],
                )
            ]
            if change_share:
                changed = sandbox.call("update_share", change_share)
                summary, seconds, rss = run_sync_in_process(sandbox.base_url, db, workers)
                incremental = Figures(
                    f"{name}: incremental {change_share:.0%}",
                    changed,
                    seconds,
                    summary["requests"],
                    summary["rate_limited"],
                    summary["retries"],
                    rss,
                    cpu_seconds=summary["cpu_seconds"],
                )
                figures.append(incremental)
                print(
                    f"  incremental requests = {incremental.requests / figures[0].requests:.2%} "
                    "of the backfill's",
                    flush=True,
                )
    finally:
        sandbox.stop()
    for figure in figures:
        print("  " + figure.line(), flush=True)
    return figures


def event_overlap_cost(calls: int, rounds: int, changes_per_round: int, **server_kwargs) -> None:
    """Requests of hourly incremental runs with a 5- and a 60-minute Event Log overlap (and a
    60-minute one that fetches again the events an earlier run applied, to show what skipping
    them saves), against one sandbox that changes between the runs."""
    from close_calls_pipeline.core import warehouse
    from close_calls_pipeline.core.close_api import CloseClient
    from close_calls_pipeline.core.sync import SyncOptions, sync_calls

    sandbox = SandboxProcess(calls, **server_kwargs)
    configs = {"5 min": 5.0, "60 min": 60.0, "60 min, applied events fetched again": 60.0}
    requests = dict.fromkeys(configs, 0)
    try:
        with tempfile.TemporaryDirectory() as tmp, CloseClient(API_KEY, sandbox.base_url) as client:
            cons = {
                name: warehouse.connect(str(Path(tmp) / f"{i}.duckdb"))
                for i, name in enumerate(configs)
            }
            for name, con in cons.items():
                sync_calls(client, con, SyncOptions(event_overlap_minutes=configs[name]))
            for round_number in range(rounds):
                sandbox.call(
                    "mutate",
                    {
                        "seed": round_number,
                        "new": changes_per_round // 10,
                        "updated": changes_per_round * 8 // 10,
                        "deleted": changes_per_round // 10,
                        "advance": 3600,
                    },
                )
                for name, con in cons.items():
                    if "again" in name:
                        con.execute("DELETE FROM close.sync_applied_events")
                    options = SyncOptions(event_overlap_minutes=configs[name])
                    requests[name] += sync_calls(client, con, options).requests
            for con in cons.values():
                con.close()
    finally:
        sandbox.stop()
    for name, total in requests.items():
        print(
            f"  overlap {name:<40} {total / rounds:6.1f} requests per hourly run "
            f"({total / requests['5 min']:.2f}x the 5-minute overlap)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="close-calls bench",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        choices=["rate-limited", "throughput", "memory", "overlap", "dbt", "hourly", "lake", "all"],
        default="all",
        help="which benchmark ('all': every one but dbt, hourly and lake, which need minutes "
        "of their own)",
    )
    parser.add_argument(
        "--calls", type=int, default=100_000, help="calls for the throughput and lake runs"
    )
    parser.add_argument(
        "--limited-calls", type=int, default=100_000, help="calls for the rate-limited run"
    )
    parser.add_argument(
        "--memory-calls",
        type=int,
        nargs=2,
        default=(100_000, 500_000),
        help="the two history sizes whose peak RSS the memory run compares",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=config.DEFAULT_WORKERS,
        help="concurrent requests of the sync",
    )
    parser.add_argument(
        "--dbt-calls",
        type=int,
        default=500_000,
        help="calls in the warehouse of the dbt and hourly scenarios",
    )
    parser.add_argument(
        "--storage",
        nargs="+",
        choices=["file", "lake"],
        default=["file", "lake"],
        help="storage modes of the hourly scenario (a lake: SQLite catalog, local data folder)",
    )
    parser.add_argument(
        "--dbt-memory-limits",
        nargs="+",
        default=[config.DEFAULT_DUCKDB_MEMORY_LIMIT, config.DEFAULT_DBT_MEMORY_LIMIT],
        help="DuckDB memory limits to build dbt with",
    )
    parser.add_argument(
        "--sync-memory-limit",
        default=config.DEFAULT_DUCKDB_MEMORY_LIMIT,
        help="DuckDB memory limit of each sync in the lake scenario",
    )
    args = parser.parse_args(argv)

    if args.scenario in ("rate-limited", "all"):
        print("100 ms latency, 20 requests/s per key (ceiling 20 x 100 calls/s):", flush=True)
        backfill_and_incremental(
            "latency 100 ms, 20 rps",
            args.limited_calls,
            args.workers,
            0.01,
            ceiling=20 * 100,
            latency_ms=100,
            rps=20,
        )
    if args.scenario in ("throughput", "all"):
        print(
            "no latency, no limit, transcripts on (ceiling: bare clients pulling pages):",
            flush=True,
        )
        backfill_and_incremental(
            "no latency, no limit", args.calls, args.workers, 0.01, ceiling=None
        )
    if args.scenario in ("memory", "all"):
        print("peak RSS of the sync process by history size:", flush=True)
        peaks = []
        for calls in args.memory_calls:
            figures = backfill_and_incremental(
                f"memory {calls:,}", calls, args.workers, 0.0, ceiling=None
            )
            peaks.append(figures[0].peak_rss_mb)
        print(
            f"  peak RSS ratio {args.memory_calls[1]:,} / {args.memory_calls[0]:,} calls: "
            f"{peaks[1] / peaks[0]:.2f}x",
            flush=True,
        )
    if args.scenario in ("overlap", "all"):
        print("Event Log overlap: hourly incremental runs, 200 calls changed an hour:", flush=True)
        event_overlap_cost(20_000, 24, 200)
    if args.scenario == "dbt":  # not in "all": it needs minutes of its own
        from close_calls_pipeline.bench.dbt import dbt_memory

        dbt_memory(args.dbt_calls, args.workers, args.dbt_memory_limits)
    if args.scenario == "hourly":  # not in "all": it needs minutes of its own
        from close_calls_pipeline.bench.hourly import hourly

        hourly(args.dbt_calls, args.workers, tuple(args.storage))
    if args.scenario == "lake":  # not in "all": both storage modes, minutes of their own
        from close_calls_pipeline.bench.lake import storage_modes

        storage_modes(args.calls, args.workers, memory_limit=args.sync_memory_limit)
    return 0
