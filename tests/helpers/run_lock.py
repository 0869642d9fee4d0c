"""Who holds a warehouse's run lock, read from outside the product: the lock file and its flock."""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime
from pathlib import Path

from close_calls_pipeline.core.locks import RunLockHolder, run_lock_path


def run_lock_holder(warehouse_path: str | Path) -> RunLockHolder | None:
    """The holder the lock file records (this process included), or None when nobody holds it.

    A shared flock on a new descriptor conflicts with the holder's exclusive one, even in the
    holder's own process, so this tells a held lock from a free one."""
    path = run_lock_path(warehouse_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _recorded_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _recorded_holder(fd: int) -> RunLockHolder:
    """What the holder wrote in the file (it may still be writing it: retried for a second)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            info = json.loads(os.pread(fd, 4096, 0))
            return RunLockHolder(
                pid=int(info["pid"]),
                started_at=datetime.fromisoformat(info["started_at"]),
                owner=str(info["owner"]),
                host=info.get("host"),
            )
        except (ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
