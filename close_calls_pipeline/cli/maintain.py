"""`close-calls maintain`: the lake's maintenance, by hand or from cron (the Dagster job
`close_calls_lake_maintenance` does the same). Thin: the work is `core.lake_maintenance.maintain`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import duckdb

from close_calls_pipeline.core.lake import Lake, connect_lake, redact
from close_calls_pipeline.core.lake_maintenance import maintain


def _from_settings(project_dir: Path) -> tuple[Lake | None, float | None]:
    """The project's lake and snapshot retention, when its settings name them."""
    from close_calls_pipeline.cli.project import settings_of

    settings = settings_of(project_dir)
    return settings.lake, settings.lake_snapshot_retention_days


def maintain_lake(
    project_dir: Path,
    *,
    lake_catalog: str | None,
    lake_data_path: str | None,
    retention_days: float | None,
    file_grace_hours: float,
    out: TextIO,
) -> int:
    """0: maintained (prints the figures); 2: no lake to maintain; 1: DuckDB failed (one line,
    without credentials: `connect_lake` redacts them)."""
    lake, configured_retention = _from_settings(project_dir)
    if lake_catalog or lake_data_path:
        if not (lake_catalog and lake_data_path):
            out.write("error: give both --lake-catalog and --lake-data-path\n")
            return 2
        lake = Lake(lake_catalog, lake_data_path)
    if lake is None:
        out.write(
            "error: no lake to maintain: the project sets no lake_catalog and lake_data_path "
            "(a DuckDB file warehouse needs no maintenance); or give --lake-catalog and "
            "--lake-data-path\n"
        )
        return 2
    retention = retention_days if retention_days is not None else configured_retention
    if retention is None:
        out.write("error: give --retention-days (how many days of snapshots to keep)\n")
        return 2
    try:
        con = connect_lake(lake)
        try:
            report = maintain(
                con, retention_days=retention, file_grace=timedelta(hours=file_grace_hours)
            )
        finally:
            con.close()
    except duckdb.Error as error:
        out.write(f"error: {lake.describe()}: {redact(' '.join(str(error).split()), os.environ)}\n")
        return 1
    out.write(f"{lake.describe()}: {report.describe()}\n")
    return 0
