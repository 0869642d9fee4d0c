"""`close-calls ui`: the Dagster UI on the project's instance, and all of it stopped together.

`dg dev` starts a webserver, a daemon and a code server. They run in a session of their own, so
that stopping `close-calls ui` (Ctrl-C, SIGTERM) stops every one of them: the whole group is
asked to stop, given a grace period, then killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from close_calls_pipeline.cli.project import dagster_home, venv_tool
from close_calls_pipeline.dagster_component.project import is_dg_project

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 15.0  # dagster dev's own shutdown of its children takes a few seconds


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed port may linger
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ui_command(project_dir: Path, port: int) -> list[str]:
    """`dg dev` on the project's own definitions when it is a `dg` project, else on the
    package's code location rooted at the project folder (`definitions.py`)."""
    target = [] if is_dg_project(project_dir) else ["-m", "close_calls_pipeline.definitions"]
    return [
        venv_tool("dg"),
        "dev",
        *target,
        "--use-active-venv",
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def ui_environment(project_dir: Path) -> dict[str, str]:
    """This environment, with the project's instance, this venv as the active one (so dg does not
    warn that another is active), and Python warnings off in the UI's processes: Dagster's beta
    and preview notices are not the user's to act on, and a -W filter cannot name their class
    (its module cannot be imported at interpreter start-up)."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(project_dir)),
        "VIRTUAL_ENV": sys.prefix,
        "PYTHONWARNINGS": "ignore",
    }


def stop_group(process: subprocess.Popen, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to the process's whole group; SIGKILL to what is left after the grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        process.poll()
        if not _group_alive(process.pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def open_ui(project_dir: Path, port: int) -> int:
    """`dg dev` on the project's instance, until Ctrl-C or SIGTERM; 1 at once if the port is
    taken."""
    if not port_is_free(port):
        print(
            f"close-calls ui: error: port {port} is already in use (another Dagster UI?); "
            f"stop it, or choose another port with --port",
            file=sys.stderr,
        )
        return 1
    env = ui_environment(project_dir)
    print(
        f"Dagster UI on http://{HOST}:{port} (project {project_dir}, instance "
        f"{env['DAGSTER_HOME']}); Ctrl-C stops it",
        flush=True,
    )
    process = subprocess.Popen(
        ui_command(project_dir, port), cwd=project_dir, env=env, start_new_session=True
    )

    def stop(signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(process)
        signal.signal(signal.SIGTERM, previous)
