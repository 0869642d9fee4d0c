"""The read-only copy of the warehouse that readers open.

DuckDB lets one process write a file, and a process that has the file open, even read-only,
keeps any other process from writing it. So readers (notebooks, the DuckDB CLI, BI tools) do not
open the warehouse the runs write: they open a copy, `close_calls_readonly.duckdb` beside
`close_calls.duckdb`, that every successful run publishes when it has finished writing:

1. under the run lock, open the warehouse (waiting, bounded, for another process to let go of
   it), `CHECKPOINT` so that the file alone holds every committed change (no WAL), and copy the
   file while this connection keeps every other writer out;
2. fsync the copy, make it read-only (mode 0400, or 0440 with `file_mode: group`), and check that DuckDB opens it and reads the
   sync state;
3. `os.replace` it onto the published name: atomic, so a reader opening the name gets either the
   previous copy or the new one, whole. A reader that has the previous copy open keeps reading
   it (its open file keeps the old inode) until it closes it and connects again.

Nothing here waits for readers, and readers never make a run wait.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from close_calls_pipeline.core import config, files, locks, warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedCopy:
    """What a publish produced, and what it cost."""

    path: str
    size_bytes: int
    seconds: float  # the whole publish, from asking for the warehouse to the rename
    checkpoint_seconds: float
    copy_seconds: float  # copy and fsync
    live_calls: int
    last_sync_finished_at: datetime | None
    high_water_mark: datetime | None


def publish_readonly_copy(
    warehouse_path: str | Path,
    *,
    lock_wait_seconds: float | None = None,
    file_mode: str = files.PRIVATE,
) -> PublishedCopy:
    """Publish `config.readonly_copy_path(warehouse_path)` from the warehouse as it is now.

    Takes the warehouse's run lock (a run that holds it in this process may call this; another
    process's run makes it fail at once), and waits up to `lock_wait_seconds` (default
    `config.DEFAULT_LOCK_WAIT_SECONDS`) for another process to let go of the warehouse file."""
    source = Path(warehouse_path).resolve()
    target = config.readonly_copy_path(source)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    with locks.acquire_run_lock(source, owner="publish of the read-only copy"):
        _remove_stale_temp_files(target)
        con = warehouse.connect(
            str(source), lock_wait_seconds=lock_wait_seconds, file_mode=file_mode
        )
        try:
            checkpoint_started = time.monotonic()
            con.execute("CHECKPOINT")
            checkpoint_seconds = time.monotonic() - checkpoint_started
            wal = Path(f"{source}.wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise RuntimeError(
                    f"{wal} is not empty after CHECKPOINT: not publishing a copy "
                    "that would miss its changes"
                )
            copy_started = time.monotonic()
            size = _copy_and_sync(source, temp, file_mode)
            copy_seconds = time.monotonic() - copy_started
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            con.close()
        try:
            live_calls, finished_at, mark = _verify(temp)
            # A WAL beside the published name would belong to a copy someone opened read-write
            # (against docs/notebooks.md); DuckDB would replay it into the new copy.
            Path(f"{target}.wal").unlink(missing_ok=True)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _sync_directory(target.parent)
    published = PublishedCopy(
        path=str(target),
        size_bytes=size,
        seconds=time.monotonic() - started,
        checkpoint_seconds=checkpoint_seconds,
        copy_seconds=copy_seconds,
        live_calls=live_calls,
        last_sync_finished_at=finished_at,
        high_water_mark=mark,
    )
    log.info(
        "published the read-only copy %s: %.1f MB in %.2f s (checkpoint %.2f s, copy %.2f s)",
        target,
        size / 1e6,
        published.seconds,
        checkpoint_seconds,
        copy_seconds,
    )
    return published


def _remove_stale_temp_files(target: Path) -> None:
    """Copies left by a publish that was killed (callers hold the run lock: none is running)."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _copy_and_sync(source: Path, destination: Path, file_mode: str) -> int:
    """Copy `source` to a new `destination` (in the kernel where it can), fsync it, make it
    read-only; returns its size."""
    with open(source, "rb") as src, open(destination, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        try:
            copied = 0
            while copied < size:
                # Kernel-side copy (a reflink on filesystems that have them); no user-space buffer.
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:  # e.g. an old kernel or a filesystem without it: a plain copy
            src.seek(0)
            dst.seek(0)
            dst.truncate()
            shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
            copied = dst.tell()
        if copied != size:
            raise OSError(f"copied {copied} of {size} bytes of {source}")
        dst.flush()
        os.fsync(dst.fileno())
    files.restrict(destination, file_mode, read_only=True)  # 0400, or 0440 shared with the group
    return size


def _verify(copy: Path) -> tuple[int, datetime | None, datetime | None]:
    """Open the copy as a reader would and read what it holds: live calls, the newest sync."""
    con = duckdb.connect(str(copy), read_only=True)
    try:
        (live_calls,) = con.execute(
            "SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL"
        ).fetchone()
        finished_at, mark = con.execute(
            "SELECT max(finished_at), arg_max(high_water_mark_after, finished_at) "
            "FROM close.sync_state"
        ).fetchone()
    finally:
        con.close()
    return live_calls, finished_at, mark


def _sync_directory(directory: Path) -> None:
    """Make the rename durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
