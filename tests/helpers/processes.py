"""Helpers for tests that start and kill real processes."""

import subprocess
import sys
import textwrap
from pathlib import Path

# A process that opens a DuckDB file (read-only or read-write), says so, and keeps it open until
# it reads a line on stdin; then closes it, says so, and stays alive until stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("held", flush=True)
    sys.stdin.readline()
    con.close()
    print("released", flush=True)
    sys.stdin.readline()
    """
)


def start_holder(path: Path, mode: str) -> subprocess.Popen:
    """A process that opens the DuckDB file `path` ("ro": read-only, else read-write), says so,
    and keeps it open until it reads a line on stdin (`release`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    """Make a `start_holder` process close the file (it stays alive until stdin closes)."""
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"


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


def run_ok(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout=300
) -> subprocess.CompletedProcess:
    """Run a command to its end and assert it succeeded, showing the end of its output if not."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (args, (done.stdout + done.stderr)[-5000:])
    return done
