"""Which dbt build a run needs: none, incremental (the calls changed since the last build) or a
full refresh. The rules are in docs/incremental.md.

The sync numbers every change of a call (`close.calls._change_seq`); the dbt project records
each build in `build_state.builds` (its on-run-end hook, in the same process as the build), with
the newest change it covered, whether every model was built, and the fingerprint asked for here
(`build_state.request`); a build that builds models records itself as not complete first, so
one that dies midway leaves that row. A fingerprint covers what makes mart rows depend on more
than their own calls: the dbt project's files, its vars (the reporting time zone) and the
reference tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from close_calls_pipeline.core import warehouse

FULL = "full"
INCREMENTAL = "incremental"
UNCHANGED = "unchanged"

# The dbt project's parts whose content decides what the models compute.
_PROJECT_PARTS = ("dbt_project.yml", "models", "macros")
# Vars that say where and with how much memory dbt runs, not what it computes.
_PLACE_VARS = (
    "close_calls_duckdb",
    "duckdb_memory_limit",
    "lake_catalog",
    "lake_attach_options",
    "lake_attach_name",
    "duckdb_extension_directory",
    "duckdb_autoinstall_known_extensions",
    "duckdb_temp_directory",
    "lake_s3",
    "duckdb_s3_uploader_max_filesize",
)


@dataclass(frozen=True)
class BuildPlan:
    mode: str  # FULL | INCREMENTAL | UNCHANGED
    reason: str
    fingerprint: str
    last_build_at: datetime | None = None

    @property
    def dbt_command(self) -> list[str]:
        """The dbt command of this plan (nothing to run when UNCHANGED). A full refresh is a
        `dbt build` of everything. An incremental build runs the models that hold rows and no
        test: the views' SQL, like the unit tests', only changes with the fingerprint, which
        makes the build full, and the data tests run after it in one connection
        (core/changed_row_tests.py), where dbt would pay for each as a node."""
        if self.mode == FULL:
            return ["build", "--full-refresh"]
        return ["run", "--exclude", "config.materialized:view"]

    @property
    def tests_after_dbt(self) -> bool:
        """Whether the data tests run after dbt, from their compiled SQL."""
        return self.mode == INCREMENTAL


def files_digest(project_dir: Path, parts: Iterable[str]) -> str:
    """A hash of the files `parts` names below `project_dir` (files or folders; missing ones
    are skipped): their paths and bytes. Content, not times: an installed package's files keep
    its wheel's times, and a deleted file leaves no newer one."""
    digest = hashlib.sha256()
    for part in parts:
        path = project_dir / part
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            files = [path] if path.is_file() else []
        for file in files:
            digest.update(str(file.relative_to(project_dir)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(con: duckdb.DuckDBPyConnection, project_dir: Path, dbt_vars: Mapping) -> str:
    """A hash of the dbt project's files, the vars that change what it computes and the content
    of the reference tables in the warehouse."""
    digest = hashlib.sha256()
    digest.update(files_digest(project_dir, _PROJECT_PARTS).encode() + b"\0")
    computed = {k: v for k, v in dbt_vars.items() if k not in _PLACE_VARS}
    digest.update(json.dumps(computed, sort_keys=True).encode() + b"\0")
    (references,) = con.execute(warehouse.read_sql("reference_fingerprint.sql")).fetchone()
    digest.update(references.encode())
    return digest.hexdigest()


def _last_build(con: duckdb.DuckDBPyConnection) -> tuple | None:
    (exists,) = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'build_state' AND table_name = 'builds'"
    ).fetchone()
    if not exists:
        return None
    return con.execute(warehouse.read_sql("last_dbt_build.sql")).fetchone()


def plan(con: duckdb.DuckDBPyConnection, fingerprint: str, full_refresh: bool = False) -> BuildPlan:
    """The build the warehouse needs now, and why."""
    last = _last_build(con)
    if full_refresh:
        return BuildPlan(FULL, "a full refresh was asked for", fingerprint)
    if last is None:
        return BuildPlan(FULL, "no dbt build is recorded yet", fingerprint)
    built_at, complete, built_fingerprint, changed_calls, drift_repairs = last
    if not complete:
        return BuildPlan(FULL, "the last dbt build did not complete", fingerprint, built_at)
    if built_fingerprint != fingerprint:
        reason = "the dbt project, its vars, or the outcomes or users changed"
        return BuildPlan(FULL, reason, fingerprint, built_at)
    if drift_repairs:
        return BuildPlan(FULL, "a reconcile repaired drift", fingerprint, built_at)
    if changed_calls:
        return BuildPlan(INCREMENTAL, f"{changed_calls} calls changed", fingerprint, built_at)
    reason = f"no change since the last run at {built_at:%Y-%m-%d %H:%M:%S %Z}"
    return BuildPlan(UNCHANGED, reason, fingerprint, built_at)


def request(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> None:
    """Record the plan: its fingerprint for the build to record (its on-run-end hook), and its
    mode for the steps after the build (see `unchanged_reason`), in one transaction."""
    with warehouse.transaction(con):
        warehouse.run_script(
            con,
            "record_build_request.sql",
            {"fingerprint": build.fingerprint, "mode": build.mode, "reason": build.reason},
        )


def unchanged_reason(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why the marts are as the last run left them ("no change since the last run at ..."), when
    the last plan found nothing to build and no call has changed since; else None. The report
    and the read-only copy are not written again then."""
    (exists,) = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'build_state' AND table_name = 'request' AND column_name = 'mode'"
    ).fetchone()
    if not exists:
        return None
    row = con.execute(
        "SELECT reason FROM build_state.request WHERE mode = $mode "
        "AND change_seq IS NOT DISTINCT FROM (SELECT max(_change_seq) FROM close.calls)",
        {"mode": UNCHANGED},
    ).fetchone()
    return row[0] if row else None
