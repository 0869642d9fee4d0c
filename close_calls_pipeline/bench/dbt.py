"""`close-calls bench --scenario dbt`: `dbt build`'s time and peak memory on a large warehouse.

The warehouse is synced from the sandbox (as the sync benchmark does), then `dbt build` runs in a
child process whose peak RSS (`ru_maxrss` of its children: dbt is the only one) is printed for
each DuckDB memory limit asked for. Printed, never asserted.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from close_calls_pipeline.bench.processes import SandboxProcess, run_sync_in_process
from close_calls_pipeline.core import config
from close_calls_pipeline.core.dbt_launcher import dbt_vars, project_args, real_dbt_executable

_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.stderr.write(done.stdout[-3000:] if done.returncode else '')\n"
)


def dbt_build_peak(
    db_path: str, memory_limit: str, target: Path, extra_args: tuple[str, ...] = ()
) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MB) of one `dbt build` on the warehouse."""
    command = [
        real_dbt_executable(),
        "build",
        *project_args(target, dbt_vars(db_path, memory_limit)),
        "--quiet",
        *extra_args,
    ]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        capture_output=True,
        text=True,
        check=False,
        cwd=config.DBT_PROJECT_DIR,
    )
    seconds = time.perf_counter() - started
    if done.stderr.strip():
        print(done.stderr, file=sys.stderr)
    code, peak_kb = done.stdout.split()
    return int(code), seconds, int(peak_kb) / 1024


def dbt_memory(calls: int, workers: int, memory_limits: list[str]) -> None:
    print(f"dbt build on a warehouse of {calls:,} calls:", flush=True)
    sandbox = SandboxProcess(calls)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        try:
            summary, seconds, _ = run_sync_in_process(sandbox.base_url, db, workers)
        finally:
            sandbox.stop()
        print(
            f"  synced {summary['calls_inserted']:,} calls in {seconds:.1f} s; warehouse "
            f"{Path(db).stat().st_size / 1e6:,.0f} MB",
            flush=True,
        )
        for limit in memory_limits:
            code, seconds, peak = dbt_build_peak(db, limit, Path(tmp) / f"target-{limit}")
            status = "ok" if code == 0 else f"FAILED ({code})"
            print(
                f"  memory_limit {limit:>7}: dbt build {status} in {seconds:6.1f} s, "
                f"peak RSS {peak:7,.0f} MB",
                flush=True,
            )
    print(f"  (this machine: {_total_memory_gb():.0f} GB of memory)", flush=True)


def _total_memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0
