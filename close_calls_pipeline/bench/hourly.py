"""`close-calls bench --scenario hourly`: what an hourly run costs above the sync, by step.

A warehouse synced from the sandbox is built in full once; then three runs are timed step by
step, as the pipeline runs them (plan, `dbt build` in a child process with its peak RSS, report,
read-only copy): one with no change, one with 1% of the live calls changed, and a requested full
refresh of the same data for comparison. The 1% are changed in the warehouse as the sync lands a
change (a new `_change_seq`), each moved to the next day, so the marts recompute the day it left
and the day it entered; the sync's own cost is `--scenario throughput`'s. Printed, never asserted.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from close_calls_pipeline.bench.dbt import dbt_build_peak
from close_calls_pipeline.bench.processes import SandboxProcess, run_sync_in_process
from close_calls_pipeline.core import build_plan, config, warehouse
from close_calls_pipeline.core.dbt_launcher import dbt_vars
from close_calls_pipeline.core.publish import publish_readonly_copy
from close_calls_pipeline.report import EmptyPeriodError, write_report

_CHANGE_ONE_PERCENT = """
UPDATE close.calls
SET activity_at = activity_at + INTERVAL 1 DAY,
    _change_seq = $change_seq
WHERE _deleted_at IS NULL AND hash(id) % 100 = 0
"""


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def _plan(db: str, memory_limit: str, full_refresh: bool) -> build_plan.BuildPlan:
    con = warehouse.connect(db)
    try:
        fingerprint = build_plan.fingerprint(
            con, config.DBT_PROJECT_DIR, json.loads(dbt_vars(db, memory_limit))
        )
        plan = build_plan.plan(con, fingerprint, full_refresh)
        build_plan.request(con, plan)
        return plan
    finally:
        con.close()


def _dbt_split(run_results: Path) -> str:
    """Where dbt's time went: its nodes' own seconds by kind (the rest is start-up and parse)."""
    seconds: dict[str, float] = {}
    count: dict[str, int] = {}
    results = json.loads(run_results.read_text())["results"]
    for result in results:
        kind = result["unique_id"].split(".", 1)[0]
        seconds[kind] = seconds.get(kind, 0.0) + result["execution_time"]
        count[kind] = count.get(kind, 0) + 1
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:3]
    top = ", ".join(
        f"{r['unique_id'].rsplit('.', 1)[-1]} {r['execution_time']:.2f} s" for r in slowest
    )
    by_kind = ", ".join(f"{count[k]} {k}s {seconds[k]:.1f} s" for k in sorted(seconds))
    return f"{by_kind}; slowest: {top}"


def _report(db: str) -> None:
    try:
        write_report(db, timezone="UTC")
    except EmptyPeriodError:
        pass


def one_run(db: str, tmp: Path, label: str, memory_limit: str, full_refresh: bool = False) -> None:
    """One run's steps above the sync, timed; the report and the copy are kept when unchanged."""
    plan, plan_s = _timed(_plan, db, memory_limit, full_refresh)
    figures = [f"plan {plan_s:5.2f} s ({plan.mode})"]
    if plan.mode == build_plan.UNCHANGED:
        figures.append("dbt 0 s (no model built), report and copy kept")
    else:
        extra = tuple(plan.dbt_args)
        code, dbt_s, peak = dbt_build_peak(db, memory_limit, tmp / "target", extra)
        status = "" if code == 0 else f" FAILED ({code})"
        split = _dbt_split(tmp / "target" / "run_results.json")
        _, report_s = _timed(_report, db)
        published, _ = _timed(publish_readonly_copy, db)
        figures += [
            f"dbt {dbt_s:6.2f} s{status} (peak RSS {peak:,.0f} MB; {split})",
            f"report {report_s:5.2f} s",
            f"copy {published.seconds:5.2f} s ({published.size_bytes / 1e6:,.0f} MB)",
        ]
    print(f"  {label:<22} " + ", ".join(figures), flush=True)


def hourly(calls: int, workers: int, memory_limit: str = config.DEFAULT_DBT_MEMORY_LIMIT) -> None:
    print(f"hourly runs above the sync, on a warehouse of {calls:,} calls:", flush=True)
    sandbox = SandboxProcess(calls)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp, db = Path(tmp_dir), str(Path(tmp_dir) / "bench.duckdb")
        try:
            summary, seconds, _ = run_sync_in_process(sandbox.base_url, db, workers)
        finally:
            sandbox.stop()
        print(f"  synced {summary['calls_inserted']:,} calls in {seconds:.1f} s", flush=True)
        one_run(db, tmp, "first build", memory_limit)
        one_run(db, tmp, "no change", memory_limit)
        con = warehouse.connect(db)
        try:
            (changed,) = con.execute(
                _CHANGE_ONE_PERCENT, {"change_seq": warehouse.next_change_seq(con)}
            ).fetchone()
        finally:
            con.close()
        one_run(db, tmp, f"{changed:,} calls changed", memory_limit)
        one_run(db, tmp, "full refresh (asked)", memory_limit, full_refresh=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average during the bench: {load}; {os.cpu_count()} CPUs)", flush=True)
