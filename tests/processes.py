"""Helpers for tests that start and kill real processes."""

import subprocess
from pathlib import Path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def gone(pid: int) -> bool:
    """Exited (a zombie counts: it holds no files and runs nothing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status or "\nState:\tX" in status
