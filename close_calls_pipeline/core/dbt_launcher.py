"""`close-calls-dbt`: dbt, in a process that dies with the run that started it.

dagster-dbt runs dbt as a child process (`subprocess.Popen([dbt_executable, ...])`). When the run
is killed outright (`kill -9`, the OOM killer, a container stop), nothing forwards a signal to
dbt: it keeps running, orphaned, holding the DuckDB file, and the next run cannot open it. This
launcher is dagster-dbt's `dbt_executable`: it asks Linux to SIGKILL it when its parent dies
(`prctl(PR_SET_PDEATHSIG)`), then replaces itself with the real dbt (`execv`: same process, so
the request stays in force, and dagster-dbt's own SIGINT on cancellation still reaches dbt).

Two Linux details: the signal fires when the *thread* that started the process exits (Dagster
starts dbt from the thread that runs the step, which waits for dbt); and a parent that dies
before `prctl` runs is caught by comparing the parent PID before and after. Only a parent that
dies during the launcher's first ~50 ms of Python start-up escapes both; that dbt has not opened
the warehouse yet, and an orphaned dbt ends at its next log line anyway (its stdout pipe is gone:
what the launcher adds is the kill during a long, silent statement). Elsewhere than Linux the
launcher just runs dbt.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from close_calls_pipeline.core import config, extensions
from close_calls_pipeline.core.lake import (
    ATTACH_NAME,
    S3_UPLOADER_MAX_FILESIZE,
    Lake,
    attach_options,
    dbt_s3_location,
)

log = logging.getLogger(__name__)

LAUNCHER_NAME = "close-calls-dbt"  # the console script (pyproject.toml) that runs `main`
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent dies; False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:  # the parent died before the request: it will never fire
        os.kill(os.getpid(), sig)
    return True


def exec_dying_with_parent(argv: Sequence[str]) -> NoReturn:
    """Replace this process with `argv`, which the kernel kills when this process's parent dies."""
    die_with_parent()
    os.execv(argv[0], list(argv))


def real_dbt_executable() -> str:
    """The dbt installed beside this Python (the venv's), else `dbt` on PATH."""
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError("dbt is not installed beside this Python nor on PATH")
    return found


def project_args(target: Path, dbt_vars_json: str) -> list[str]:
    """The arguments every dbt command of the product passes: the bundled project (its own
    profiles.yml), artefacts and logs in `target` (never the package), and the vars."""
    project = str(config.DBT_PROJECT_DIR)
    return [
        "--project-dir", project,
        "--profiles-dir", project,
        "--target-path", str(target),
        "--log-path", str(target),
        "--vars", dbt_vars_json,
    ]  # fmt: skip


def dbt_vars(
    duckdb_path: str,
    memory_limit: str,
    reporting_timezone: str = config.DEFAULT_REPORTING_TIMEZONE,
    *,
    lake: Lake | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The warehouse file, its memory limit (read by profiles.yml) and the reporting time zone
    (read by the models), as dbt `--vars`. With a `lake`, dbt builds in the lake instead of the
    file (profiles.yml's `lake` output): its catalog and data path, the name it is attached
    under, DuckDB's extension settings (DuckLake from the installed packages) and a folder to
    spill to. An S3 data path adds its bucket, region and endpoint (`lake.dbt_s3_location`, from
    `environ`, default this process's); the keys dbt reads from its own environment."""
    dbt_vars: dict[str, object] = {
        "close_calls_duckdb": duckdb_path,
        "duckdb_memory_limit": memory_limit,
        "reporting_timezone": reporting_timezone,
    }
    if lake is not None:
        key = hashlib.sha256(lake.catalog.encode()).hexdigest()[:12]
        dbt_vars |= {
            "lake_catalog": lake.catalog,
            "lake_attach_options": attach_options(lake),
            "lake_attach_name": ATTACH_NAME,
            **{f"duckdb_{key}": value for key, value in extensions.settings_for_dbt().items()},
            # where it spills beyond its memory limit (a file warehouse spills beside the file):
            # a folder of the lake's own, which DuckDB creates and removes. The same each run:
            # dbt re-parses the whole project when a var changes.
            "duckdb_temp_directory": str(
                Path(tempfile.gettempdir()) / f"close-calls-dbt-{key}.tmp"
            ),
        }
        s3 = dbt_s3_location(lake, os.environ if environ is None else environ)
        if s3 is not None:
            dbt_vars["lake_s3"] = s3
            dbt_vars["duckdb_s3_uploader_max_filesize"] = S3_UPLOADER_MAX_FILESIZE
    return json.dumps(dbt_vars)


def launcher_executable(fallback: str) -> str:
    """The path of `close-calls-dbt` (beside this Python, else on PATH) for dagster-dbt's
    `dbt_executable`; `fallback` (plain dbt, logged) when the package was installed without it."""
    beside_python = Path(sys.executable).parent / LAUNCHER_NAME
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(LAUNCHER_NAME)
    if found is not None:
        return found
    log.warning(
        "%s is not installed (re-run `pip install -e .`): dbt runs without it, and may outlive "
        "a killed run",
        LAUNCHER_NAME,
    )
    return fallback


def main() -> NoReturn:
    """`close-calls-dbt ARGS...` = `dbt ARGS...`, dying with its parent."""
    dbt = real_dbt_executable()
    exec_dying_with_parent([dbt, *sys.argv[1:]])
