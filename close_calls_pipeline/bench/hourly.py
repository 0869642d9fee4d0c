"""`close-calls bench --scenario hourly`: what the pipeline's runs cost, step by step.

Real `close-calls run` processes against the sandbox API in a process of its own (as against
Close: the run's process holds no sandbox), on one warehouse: the first run (the backfill and a
full build), a run with no change, a run after 1% of the calls changed in the API, and a run
asked for a full refresh. For each: the wall time, the start-up (the process starting until its
first step starts), each step's time as the run reports it, where dbt's time went (its
run_results.json), and the peak RSS of every process of the run (the run's own, dbt's).
Printed, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from close_calls_pipeline.bench.processes import API_KEY, SandboxProcess
from close_calls_pipeline.core import config
from close_calls_pipeline.dagster_component.dbt import RUN_TARGET

_PROGRESS = re.compile(r"^\[\s*(?P<at>[\d.]+)s\] (?P<text>.*)$")
_STEP_DONE = re.compile(r"^(?P<step>[\w.\[\]]+): done in (?P<seconds>[\d.]+) s")
_STEP_STARTED = re.compile(r"^[\w.\[\]]+: started$")
# core/publish.py's line: the size, the time and how the copy was made.
_PUBLISHED = re.compile(r"published the read-only copy \S+: (?P<how>.*)$")


@dataclass
class RunFigures:
    code: int
    wall: float
    startup: float | None  # the process starting until its first step starts
    startup_split: dict[str, float] = field(default_factory=dict)  # its phases, seconds
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds, as the run says
    peaks: dict[str, float] = field(default_factory=dict)  # process -> peak RSS, MB
    output: list[str] = field(default_factory=list)


def _peak_rss_mb(pid: int) -> float | None:
    """The process's own peak RSS so far (VmHWM), MB; None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _descendants(root: int) -> list[int]:
    """The processes started by `root`, at any depth (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _process_name(pid: int) -> str:
    """`dbt` for the dbt process (the launcher execs dbt), else the program's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    names = [Path(arg.decode(errors="replace")).name for arg in argv[:2]]
    return "dbt" if {"dbt", "close-calls-dbt"} & set(names) else names[0] or "?"


def _sample_peaks(root: int, peaks: dict[str, float], done: threading.Event) -> None:
    """Every 50 ms, the peak RSS of the run's process and each of its descendants, by name."""
    while not done.is_set():
        for pid in [root, *_descendants(root)]:
            peak = _peak_rss_mb(pid)
            if peak is not None:
                name = "run" if pid == root else _process_name(pid)
                peaks[name] = max(peaks.get(name, 0.0), peak)
        done.wait(0.05)


def close_calls_run(project: Path, env: dict[str, str], *args: str) -> RunFigures:
    """One `close-calls run` in a fresh process, timed line by line."""
    command = [str(Path(sys.executable).parent / "close-calls"), "run", *args]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peaks: dict[str, float] = {}
    done = threading.Event()
    sampler = threading.Thread(target=_sample_peaks, args=(process.pid, peaks, done), daemon=True)
    sampler.start()
    startup, steps, output, marks = None, {}, [], {}
    assert process.stdout is not None
    for raw in process.stdout:
        output.append(raw.rstrip("\n"))
        match = _PROGRESS.match(raw.rstrip("\n"))
        if not match:
            continue
        text, at = match["text"], float(match["at"])
        if not marks:  # the run's clock starts once the CLI's modules are imported
            marks["imports"] = time.perf_counter() - started - at
        for phase, line in _STARTUP_LINES.items():
            if text.startswith(line) and phase not in marks:
                marks[phase] = at
        if startup is None and _STEP_STARTED.match(text):
            startup = time.perf_counter() - started
            marks["first step"] = at
        if step := _STEP_DONE.match(text):
            steps[step["step"]] = float(step["seconds"])
    code = process.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return RunFigures(code, wall, startup, _phases(marks), steps, peaks, output)


# Progress lines of `close-calls run` that end a phase of its start-up (cli/run.py).
_STARTUP_LINES = {"settings": "syncing ", "definitions": "running the Dagster job"}


def _phases(marks: dict[str, float]) -> dict[str, float]:
    """Seconds of each start-up phase: imports, settings (and the run lock), the Dagster
    definitions (dbt manifest, asset graph), the job until its first step (instance, resources)."""
    order = ["settings", "definitions", "first step"]
    if "imports" not in marks or any(phase not in marks for phase in order):
        return {}
    phases, previous = {"imports": marks["imports"]}, 0.0
    for phase in order:
        phases[phase], previous = marks[phase] - previous, marks[phase]
    return phases


def dbt_split(run_results: Path) -> str:
    """Where dbt's time went: its nodes' own seconds by kind (the rest is start-up and parse)."""
    if not run_results.exists():
        return "no dbt run"
    seconds: dict[str, float] = {}
    count: dict[str, int] = {}
    run = json.loads(run_results.read_text())
    results = run["results"]
    for result in results:
        kind = result["unique_id"].split(".", 1)[0]
        seconds[kind] = seconds.get(kind, 0.0) + result["execution_time"]
        count[kind] = count.get(kind, 0) + 1
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:3]
    top = ", ".join(
        f"{r['unique_id'].rsplit('.', 1)[-1]} {r['execution_time']:.2f} s" for r in slowest
    )
    by_kind = ", ".join(f"{count[k]} {k}s {seconds[k]:.1f} s" for k in sorted(seconds))
    return f"{run['elapsed_time']:.1f} s in dbt: {by_kind}; slowest: {top}"


# Progress lines of the `dbt_build` step that end a phase of it (dagster_component/dbt.py).
_DBT_STEP_LINES = {
    "plan": "dbt build: ",
    "compile tests": "dbt tests for incremental builds in",
    "dbt (start, models, recording them)": "dbt run: done",
    "data tests": "data tests on the changed rows",
}


def dbt_step_split(output: list[str]) -> str | None:
    """Seconds of each phase of an incremental `dbt_build` step, from its progress lines: the
    plan, compiling the tests (once per project version), dbt's process, the data tests, and
    Dagster recording their check results (until the step is done)."""
    marks: dict[str, float] = {}
    for line in output:
        match = _PROGRESS.match(line)
        if not match:
            continue
        text = match["text"].strip()
        if text == "dbt_build: started":
            marks["start"] = float(match["at"])
        elif "start" in marks:
            for phase, prefix in _DBT_STEP_LINES.items():
                if prefix in text and phase not in marks:
                    marks[phase] = float(match["at"])
            if text.startswith("dbt_build: done"):
                marks["check results recorded"] = float(match["at"])
                break
    if "dbt (start, models, recording them)" not in marks:
        return None
    phases, previous = [], marks["start"]
    for phase in [*_DBT_STEP_LINES, "check results recorded"]:
        if phase in marks:
            phases.append(f"{phase} {marks[phase] - previous:.1f}")
            previous = marks[phase]
    return ", ".join(phases)


def _print_run(label: str, figures: RunFigures, run_results: Path) -> None:
    status = "" if figures.code == 0 else f" FAILED ({figures.code})"
    startup = f"{figures.startup:.1f} s" if figures.startup is not None else "?"
    if figures.startup_split:
        split = ", ".join(f"{name} {sec:.1f}" for name, sec in figures.startup_split.items())
        startup += f" ({split})"
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in figures.steps.items())
    peaks = ", ".join(f"{name} {mb:,.0f} MB" for name, mb in sorted(figures.peaks.items()))
    print(f"  {label:<22} wall {figures.wall:5.1f} s{status}: start-up {startup}; {steps}")
    print(f"  {'':<22} peak RSS: {peaks}")
    dbt_ran = any("dbt build: incremental" in line or "dbt build: full" in line
                  for line in figures.output)  # fmt: skip
    if dbt_ran:
        print(f"  {'':<22} dbt: {dbt_split(run_results)}")
    if split := dbt_step_split(figures.output):
        print(f"  {'':<22} dbt_build step, seconds: {split}")
    for line in figures.output:
        if published := _PUBLISHED.search(line):
            print(f"  {'':<22} read-only copy: {published['how']}")
    if figures.code:
        print("\n".join(f"    | {line}" for line in figures.output[-30:]))
    sys.stdout.flush()


STORAGE_MODES = ("file", "lake")


def hourly(calls: int, workers: int, storage_modes: tuple[str, ...] = STORAGE_MODES) -> None:
    for mode in storage_modes:
        _hourly_runs(calls, mode)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average after the bench: {load}; {os.cpu_count()} CPUs)", flush=True)


def _hourly_runs(calls: int, storage: str) -> None:
    """The runs on one warehouse: a DuckDB file, or a lake (SQLite catalog, local data folder)."""
    print(f"hourly runs of `close-calls run` on a {storage} of {calls:,} calls:", flush=True)
    sandbox = SandboxProcess(calls)
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            project = Path(tmp_dir)
            env = {
                **os.environ,
                config.CLOSE_API_KEY_ENV: API_KEY,
                config.CLOSE_API_BASE_URL_ENV: sandbox.base_url,
                config.CLOSE_CALLS_DUCKDB_ENV: str(project / "bench.duckdb"),
            }
            if storage == "lake":
                env[config.CLOSE_CALLS_LAKE_CATALOG_ENV] = f"sqlite:{project / 'catalog.sqlite'}"
                env[config.CLOSE_CALLS_LAKE_DATA_PATH_ENV] = str(project / "data")
            run_results = config.dbt_target_path(project) / RUN_TARGET / "run_results.json"

            def run(label: str, *args: str) -> RunFigures:
                run_results.unlink(missing_ok=True)
                figures = close_calls_run(project, env, *args)
                _print_run(label, figures, run_results)
                return figures

            run("first run (backfill)")
            run("no change")
            changed = sandbox.call("update_share", 0.01)
            # the first incremental build after a full one also compiles the tests (once per
            # version of the project): the second is what every hour costs
            run(f"{changed:,} changed, 1st")
            changed = sandbox.call("update_share", 0.01)
            run(f"{changed:,} changed, 2nd")
            run("full refresh (asked)", "--full-refresh")
    finally:
        sandbox.stop()
