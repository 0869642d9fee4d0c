"""How fast the sandbox serves: `python -m close_calls_pipeline.bench.sandbox [--calls N]`.

Starts the sandbox in a subprocess (so the client's threads do not share its GIL), then pulls
every call with transcripts through many concurrent keep-alive connections, one
`requests.Session` per thread, walking date_created windows with `_skip` paging, and prints the
store build time, pages/s and calls/s, and the CPU time the sandbox process spent serving them:
on a shared machine pages/s moves with the load, while CPU seconds per page says whether the
sandbox (rather than the client) is the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
import time
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime

import orjson
import requests

from close_calls_pipeline.core.call_fields import TRANSCRIPT_FIELDS
from close_calls_pipeline.sandbox.data import CALL_FIELDS, EXTRA_FIELDS

FIELDS = ",".join(CALL_FIELDS + EXTRA_FIELDS + TRANSCRIPT_FIELDS)
KEY = "bench-key"


def _start_server(calls: int, seed: int) -> tuple[subprocess.Popen, str, str]:
    code = (
        "from close_calls_pipeline.sandbox.server import serve\n"
        f"serve(host='127.0.0.1', port=0, calls={calls}, seed={seed}, api_key={KEY!r}, "
        "latency_ms=0.0, rps=None, fault_rate=0.0, max_skip=250000, live=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    base_url = ""
    info = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Close sandbox API at "):
            base_url = line.split(" at ", 1)[1].strip()
        if "built in" in line:
            info = line.strip()
            break
    if not base_url:
        proc.kill()
        raise RuntimeError("the sandbox did not start")
    return proc, base_url, info


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used by process `pid` (from Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def pull_all(
    base_url: str, api_key: str, threads: int = 8, windows: int = 64, limit: int = 100
) -> dict:
    """Pull every call with transcripts through `threads` bare keep-alive clients (no decoding):
    what the server can serve. Returns pages, calls, bytes, transcripts and seconds."""
    probe = requests.get(base_url + "/me/", auth=(api_key, ""), timeout=30)
    now = parsedate_to_datetime(probe.headers["Date"]).astimezone(UTC)
    start = now - timedelta(days=400)
    end = now + timedelta(days=1)
    step = (end - start) / windows
    work: queue.Queue = queue.Queue()
    for i in range(windows):
        work.put((start + step * i, start + step * (i + 1)))
    totals = {"pages": 0, "calls": 0, "bytes": 0, "transcripts": 0}
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        s = requests.Session()
        s.auth = (api_key, "")
        pages = n_calls = n_bytes = n_tx = 0
        while True:
            try:
                lo, hi = work.get_nowait()
            except queue.Empty:
                break
            skip = 0
            while True:
                r = s.get(
                    base_url + "/activity/call/",
                    params={
                        "date_created__gte": lo.isoformat(),
                        "date_created__lt": hi.isoformat(),
                        "_skip": skip,
                        "_limit": limit,
                        "_fields": FIELDS,
                    },
                    timeout=60,
                )
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                body = r.content
                pages += 1
                n_calls += body.count(b'"_type":"Call"')
                n_bytes += len(body)
                n_tx += body.count(b'"utterances":')
                skip += limit
                if not body.endswith(b'"has_more":true}'):
                    break
        with lock:
            totals["pages"] += pages
            totals["calls"] += n_calls
            totals["bytes"] += n_bytes
            totals["transcripts"] += n_tx

    started = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(f"errors during the pull: {errors[:3]}")
    return {**totals, "seconds": time.perf_counter() - started}


def run(calls: int, seed: int, threads: int, windows: int, limit: int) -> dict:
    t0 = time.perf_counter()
    proc, base_url, info = _start_server(calls, seed)
    startup = time.perf_counter() - t0
    print(f"sandbox up in {startup:.1f}s: {info}")
    try:
        cpu0 = _cpu_seconds(proc.pid)
        totals = pull_all(base_url, KEY, threads, windows, limit)
        cpu1 = _cpu_seconds(proc.pid)
        stats = requests.get(
            base_url.rsplit("/api/v1", 1)[0] + "/_sandbox/stats", auth=(KEY, ""), timeout=30
        ).json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    elapsed = totals["seconds"]
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "calls_in_store": calls,
        "startup_s": round(startup, 2),
        "pull_s": round(elapsed, 2),
        "pages": totals["pages"],
        "calls": totals["calls"],
        "transcripts": totals["transcripts"],
        "mb": round(totals["bytes"] / 1e6, 1),
        "pages_per_s": round(totals["pages"] / elapsed, 1),
        "calls_per_s": round(totals["calls"] / elapsed, 1),
        "mb_per_s": round(totals["bytes"] / 1e6 / elapsed, 1),
        "server_requests": stats["requests"],
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 2),
        "pages_per_server_cpu_s": round(totals["pages"] / server_cpu) if server_cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--windows", type=int, default=64)
    p.add_argument("--limit", type=int, default=100)
    a = p.parse_args(argv)
    res = run(a.calls, a.seed, a.threads, a.windows, a.limit)
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    if res["calls"] != a.calls:
        print(f"WARNING: pulled {res['calls']} calls, store has {a.calls}", file=sys.stderr)
    print(
        f"{res['pages_per_s']} pages/s, {res['calls_per_s']} calls/s "
        f"({res['mb_per_s']} MB/s) with transcripts, {a.threads} connections"
    )
    if res["server_cpu_s"]:
        print(
            f"the sandbox process used {res['server_cpu_s']} CPU-s for them: "
            f"{res['pages_per_server_cpu_s']} pages per CPU-second"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
