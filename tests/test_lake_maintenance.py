"""Lake maintenance on a SQLite-catalog lake with a local data folder: 24 hourly-like write
transactions leave many small files and snapshots; maintenance leaves few, expires the old
snapshots and deletes the files no snapshot needs, with the data unchanged row for row. The same
through the Dagster job and `close-calls maintain`."""

from __future__ import annotations

import io
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.lake_files import data_files, row_groups

from close_calls_pipeline.cli.main import main
from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.lake import Lake, connect_lake
from close_calls_pipeline.core.lake_maintenance import NotALakeError, lake_files, maintain
from close_calls_pipeline.dagster_component.maintenance import (
    MAINTENANCE_SCHEDULE,
    build_lake_maintenance,
)

HOURS = 24
ROWS_PER_HOUR = 1_200  # more than the inlining limit (1,000 rows): a Parquet file an hour


def storage(data: Path) -> tuple[int, int]:
    """Files and bytes really in the data folder."""
    files = [path for path in data.rglob("*") if path.is_file()]
    return len(files), sum(path.stat().st_size for path in files)


def hourly_lake(root: Path) -> Lake:
    """A lake after 24 runs: each inserts a batch of calls, updates some of the calls of earlier
    runs and deletes a few, in one transaction."""
    lake = Lake(f"sqlite:{root / 'catalog.sqlite'}", str(root / "data") + "/")
    con = connect_lake(lake)
    try:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.calls (id BIGINT, hour INTEGER, disposition VARCHAR)")
        for hour in range(HOURS):
            with warehouse.transaction(con):
                con.execute(
                    "INSERT INTO close.calls SELECT $h * 10000 + i, $h, 'answered' "
                    "FROM range($n) t(i)",
                    {"h": hour, "n": ROWS_PER_HOUR},
                )
                con.execute(
                    "UPDATE close.calls SET disposition = 'vm-left' WHERE id % 97 = $h", {"h": hour}
                )
                con.execute("DELETE FROM close.calls WHERE id % 101 = $h", {"h": hour})
    finally:
        con.close()
    return lake


def contents(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT * FROM close.calls ORDER BY id").fetchall()


def test_maintenance_leaves_few_files_and_the_same_data(tmp_path):
    lake = hourly_lake(tmp_path)
    data = tmp_path / "data"
    con = connect_lake(lake)
    try:
        rows = contents(con)
        files_before, bytes_before = storage(data)
        counted = lake_files(con)
        assert counted.files == files_before  # the catalog's count is the folder's
        assert counted.snapshots > HOURS

        # The default retention keeps every snapshot of the last days: nothing is deleted,
        # whatever was compacted stays for time travel.
        kept = maintain(con, retention_days=30)
        assert kept.snapshots_expired == 0 and kept.files_deleted == 0
        assert kept.files_compacted > 0 and contents(con) == rows
        assert storage(data)[0] == kept.after.files >= files_before

        # Retention 0 (and no grace): only the current snapshot and its files remain.
        report = maintain(con, retention_days=0, file_grace=timedelta(0))
        files_after, bytes_after = storage(data)
        assert contents(con) == rows
        assert report.after.snapshots == 1 and report.snapshots_expired > HOURS
        assert files_after == report.after.files and report.after.awaiting_deletion == 0
        # (bytes may grow: updated rows kept inlined in the catalog are flushed into the files)
        assert files_after <= 2 < files_before / 10
        print(
            f"\n{HOURS} hourly write transactions: {files_before} files, {bytes_before} bytes, "
            f"{counted.snapshots} snapshots; after maintenance (retention 0): {files_after} "
            f"files, {bytes_after} bytes, {report.after.snapshots} snapshot\n{report.describe()}"
        )
    finally:
        con.close()

    # A reader attaching afterwards sees the same rows.
    reader = connect_lake(lake, read_only=True)
    try:
        assert contents(reader) == rows
    finally:
        reader.close()


def test_maintenance_writes_the_calls_in_bounded_row_groups(tmp_path):
    """DuckDB holds a row group in memory while it writes it: the calls' wide rows, merged into
    row groups of DuckDB's default 122,880 rows, made a 500,000-call lake's maintenance run out
    of memory. Merged here, 28,000 calls would be one row group without the bound."""
    lake = hourly_lake(tmp_path)
    con = connect_lake(lake)
    try:
        rows = contents(con)
        report = maintain(con, retention_days=30, row_group_rows=4_096)
        assert report.files_compacted > 0 and contents(con) == rows
        files = data_files(con, "calls", schema="close")
        groups = row_groups(con, files)
    finally:
        con.close()
    count, largest, total = groups
    assert len(files) <= 2 and total >= len(rows)  # merged (deleted rows may remain in a file)
    # DuckDB closes a row group at the first chunk of rows past the bound (4,920 rows here)
    assert count > 1 and largest < 2 * 4_096


def test_maintenance_refuses_a_connection_without_the_lake(tmp_path):
    con = warehouse.connect(str(tmp_path / "file.duckdb"))
    try:
        with pytest.raises(NotALakeError):
            maintain(con, retention_days=0)
    finally:
        con.close()


class LakeWarehouse(dg.ConfigurableResource):
    """Stands in for the warehouse resource in lake mode: `connect()` yields the lake."""

    catalog: str
    data_path: str

    @contextmanager
    def connect(self):
        con = connect_lake(Lake(self.catalog, self.data_path))
        try:
            yield con
        finally:
            con.close()


def test_the_dagster_job_maintains_the_lake_and_its_schedule_starts_stopped(tmp_path):
    lake = hourly_lake(tmp_path)
    files_before = storage(tmp_path / "data")[0]
    job, schedules = build_lake_maintenance(
        "duckdb_warehouse", retention_days=0, file_grace_hours=0
    )
    assert [s.name for s in schedules] == [MAINTENANCE_SCHEDULE]
    assert schedules[0].default_status == dg.DefaultScheduleStatus.STOPPED
    definitions = dg.Definitions(
        jobs=[job],
        schedules=schedules,
        resources={
            "duckdb_warehouse": LakeWarehouse(catalog=lake.catalog, data_path=lake.data_path)
        },
    )
    result = definitions.resolve_job_def(job.name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["files_before"].value == files_before
    assert metadata["snapshots_after"].value == 1
    assert storage(tmp_path / "data")[0] == metadata["files_after"].value < files_before
    assert build_lake_maintenance("w", retention_days=30, cron_schedule=None)[1] == []


def test_close_calls_maintain(tmp_path, capsys):
    lake = hourly_lake(tmp_path)
    files_before = storage(tmp_path / "data")[0]
    argv = ["maintain", "--project-dir", str(tmp_path), "--lake-catalog", lake.catalog,
            "--lake-data-path", lake.data_path, "--retention-days", "0", "--file-grace-hours", "0"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"lake files {files_before} -> {storage(tmp_path / 'data')[0]}" in printed
    assert "snapshots expired" in printed

    # Without a lake (the project's settings name none, nor the options): refused, exit 2.
    out = io.StringIO()
    from close_calls_pipeline.cli.maintain import maintain_lake

    assert (
        maintain_lake(tmp_path, lake_catalog=None, lake_data_path=None, retention_days=0,
                      file_grace_hours=0, out=out) == 2
    )  # fmt: skip
    assert "no lake to maintain" in out.getvalue()
