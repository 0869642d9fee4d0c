"""What publishing the read-only copy as a whole file costs: seconds per GB of warehouse.

    python -m close_calls_pipeline.bench.publish [--gb 1.0] [--repeat 5] [--dir DIR]

Builds a warehouse of about `--gb` GB in DIR (the schema plus a filler table of hardly
compressible rows), then publishes it `--repeat` times, alternating a source file in the page
cache (as right after a run, which just wrote it) and one evicted from it (`POSIX_FADV_DONTNEED`:
read back from disk). Prints each publish's seconds, its copy (with fsync) and the s/GB. No
previous copy is kept, so each publish copies the whole file: what a publish costs when it
cannot update the previous copy (`core/publish.py`); `close-calls bench --scenario hourly` times
the runs' publishes, which update it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.publish import publish_readonly_copy

GB = 1e9


def build_warehouse(path: Path, size_gb: float) -> int:
    """A warehouse of at least `size_gb` GB; returns its size in bytes."""
    con = warehouse.connect(str(path), memory_limit="1GB")
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS close.bench_filler (id BIGINT, a VARCHAR, b VARCHAR, "
            "x DOUBLE)"
        )
        batch = 0
        while path.stat().st_size < size_gb * GB:
            con.execute(
                "INSERT INTO close.bench_filler SELECT i, md5(i::VARCHAR), "
                "md5((i * 7919)::VARCHAR) || md5((i * 104729)::VARCHAR), random() "
                "FROM range(?, ?) t(i)",
                [batch * 2_000_000, (batch + 1) * 2_000_000],
            )
            con.execute("CHECKPOINT")
            batch += 1
    finally:
        con.close()
    return path.stat().st_size


def evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="warehouse size to build (GB)")
    parser.add_argument("--repeat", type=int, default=5, help="publishes to time")
    parser.add_argument("--dir", default=None, help="where to build it (default: a temp dir)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_publish_") as folder:
        path = Path(folder) / "close_calls.duckdb"
        started = time.monotonic()
        size = build_warehouse(path, args.gb)
        print(f"warehouse {path}: {size / GB:.2f} GB, built in {time.monotonic() - started:.0f} s")
        rates = {"cached": [], "cold": []}
        for i in range(args.repeat):
            state = "cold" if i % 2 else "cached"
            if state == "cold":
                evict_from_page_cache(path)
            published = publish_readonly_copy(path, lock_wait_seconds=0, keep_previous=False)
            rate = published.seconds / (published.size_bytes / GB)
            rates[state].append(rate)
            print(
                f"publish {i + 1} (source {state}): {published.seconds:.2f} s "
                f"(checkpoint {published.checkpoint_seconds:.2f} s, copy + fsync "
                f"{published.copy_seconds:.2f} s) = {rate:.2f} s/GB"
            )
        for state, values in rates.items():
            if values:
                print(
                    f"source {state}: median {statistics.median(values):.2f} s/GB "
                    f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
