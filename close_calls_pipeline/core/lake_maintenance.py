"""Keeping a lake small: hourly runs write small Parquet files (and small delete files for the
rows they update), and every commit is a snapshot that keeps its files for time travel.

`maintain` runs DuckLake's own maintenance functions on a connection that has the lake attached
as `close_calls` (`core/lake.connect_lake`), in the order that frees the most:

0. bound the row groups of the files it writes (config.LAKE_ROW_GROUP_ROWS; the writer's
   connection sets it too), which DuckDB holds in memory while it writes them: the rewrite of a
   large lake's calls needs it;
1. flush the rows DuckLake inlined into the catalog (small commits) to Parquet files;
2. rewrite the data files that have deleted rows, merged with their neighbours, then merge the
   remaining small files;
3. expire the snapshots older than the retention (time travel reaches back that far, no
   further), which leaves the files only they needed scheduled for deletion;
4. delete the files scheduled for deletion, and files the catalog does not know (a crashed
   writer's), once they are older than the grace period.

Counted before and after from the catalog: the files on storage (the data and delete files of
the current snapshot and of those kept for time travel, their bytes, and the files awaiting
deletion), and the snapshots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from close_calls_pipeline.core import config
from close_calls_pipeline.core.lake import ATTACH_NAME, bound_row_groups

_CATALOG = f"'{ATTACH_NAME}'"
_METADATA = f"__ducklake_metadata_{ATTACH_NAME}"


class NotALakeError(RuntimeError):
    """Maintenance was asked of a connection without the lake attached (a DuckDB file needs none)."""


@dataclass(frozen=True)
class LakeFiles:
    files: int  # on storage: the tracked files and those awaiting deletion
    tracked_bytes: int  # of the data and delete files of the current and time-travel snapshots
    awaiting_deletion: int  # files no snapshot needs, deleted once older than the grace period
    snapshots: int


@dataclass(frozen=True)
class MaintenanceReport:
    before: LakeFiles
    after: LakeFiles
    rows_flushed: int  # inlined rows written out to Parquet
    files_compacted: int  # files rewritten or merged into `files_written`
    files_written: int
    snapshots_expired: int
    files_deleted: int  # from storage: scheduled ones and orphans

    def describe(self) -> str:
        """One line for logs and the command line."""
        return (
            f"lake files {self.before.files} -> {self.after.files} "
            f"({_megabytes(self.before.tracked_bytes)} -> {_megabytes(self.after.tracked_bytes)} "
            f"tracked), snapshots "
            f"{self.before.snapshots} -> {self.after.snapshots}: {self.rows_flushed} inlined "
            f"rows flushed, {self.files_compacted} files compacted into {self.files_written}, "
            f"{self.snapshots_expired} snapshots expired, {self.files_deleted} files deleted"
        )

    def as_metadata(self) -> dict[str, int]:
        """Flat figures (Dagster metadata)."""
        figures = {key: value for key, value in asdict(self).items() if isinstance(value, int)}
        for when in ("before", "after"):
            figures.update(
                {f"{key}_{when}": value for key, value in asdict(getattr(self, when)).items()}
            )
        return figures


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB"


def _require_lake(con: duckdb.DuckDBPyConnection) -> None:
    found = con.execute(
        "SELECT type FROM duckdb_databases() WHERE database_name = ?", [ATTACH_NAME]
    ).fetchone()
    if found is None or found[0] != "ducklake":
        raise NotALakeError(
            f"lake maintenance needs the lake attached as {ATTACH_NAME} (core/lake.connect_lake); "
            "a DuckDB file warehouse has nothing to maintain"
        )


def lake_files(con: duckdb.DuckDBPyConnection) -> LakeFiles:
    counts = []
    for table in ("ducklake_data_file", "ducklake_delete_file"):
        counts.append(
            con.execute(
                f"SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM {_METADATA}.{table}"
            ).fetchone()
        )
    (awaiting,) = con.execute(
        f"SELECT count(*) FROM {_METADATA}.ducklake_files_scheduled_for_deletion"
    ).fetchone()
    (snapshots,) = con.execute(f"SELECT count(*) FROM ducklake_snapshots({_CATALOG})").fetchone()
    return LakeFiles(
        files=sum(int(n) for n, _ in counts) + int(awaiting),
        tracked_bytes=sum(int(size) for _, size in counts),
        awaiting_deletion=int(awaiting),
        snapshots=int(snapshots),
    )


def flush_inlined_data(con: duckdb.DuckDBPyConnection) -> int:
    """Rows flushed from the catalog to Parquet files."""
    rows = con.execute(f"CALL ducklake_flush_inlined_data({_CATALOG})").fetchall()
    return sum(int(flushed) for *_, flushed in rows)


def compact(
    con: duckdb.DuckDBPyConnection,
    delete_threshold: float = config.DEFAULT_LAKE_REWRITE_DELETE_THRESHOLD,
) -> tuple[int, int]:
    """(files processed, files written): rewrite files with deleted rows, then merge small ones."""
    processed = written = 0
    for statement, params in (
        (
            f"CALL ducklake_rewrite_data_files({_CATALOG}, delete_threshold => ?)",
            [delete_threshold],
        ),
        (f"CALL ducklake_merge_adjacent_files({_CATALOG})", None),
    ):
        for *_, files_processed, files_created in con.execute(statement, params).fetchall():
            processed += int(files_processed)
            written += int(files_created)
    return processed, written


def expire_snapshots(con: duckdb.DuckDBPyConnection, older_than: datetime) -> int:
    """Snapshots expired (the current one never is)."""
    expired = con.execute(
        f"CALL ducklake_expire_snapshots({_CATALOG}, older_than => ?::TIMESTAMPTZ)", [older_than]
    ).fetchall()
    return len(expired)


def delete_unneeded_files(con: duckdb.DuckDBPyConnection, older_than: datetime) -> int:
    """Files deleted from storage: those scheduled for deletion before `older_than`, and files
    in the data path the catalog does not know, older than that."""
    deleted = 0
    for function in ("ducklake_cleanup_old_files", "ducklake_delete_orphaned_files"):
        deleted += len(
            con.execute(
                f"CALL {function}({_CATALOG}, older_than => ?::TIMESTAMPTZ)", [older_than]
            ).fetchall()
        )
    return deleted


def maintain(
    con: duckdb.DuckDBPyConnection,
    *,
    retention_days: float,
    file_grace: timedelta = timedelta(hours=config.DEFAULT_LAKE_FILE_GRACE_HOURS),
    delete_threshold: float = config.DEFAULT_LAKE_REWRITE_DELETE_THRESHOLD,
    row_group_rows: int = config.LAKE_ROW_GROUP_ROWS,
    now: datetime | None = None,
) -> MaintenanceReport:
    """All of the above, in order; returns the figures. Each step is its own DuckLake commit:
    stopped midway, the lake is consistent and the next run goes on."""
    if retention_days < 0 or file_grace < timedelta(0):
        raise ValueError("retention_days and file_grace must be 0 or more")
    _require_lake(con)
    before = lake_files(con)
    bound_row_groups(con, row_group_rows)
    flushed = flush_inlined_data(con)
    compacted, written = compact(con, delete_threshold)
    now = now or datetime.now(UTC)
    expired = expire_snapshots(con, now - timedelta(days=retention_days))
    # The files just scheduled count from now: a zero grace deletes them at once.
    deleted = delete_unneeded_files(con, max(now, datetime.now(UTC)) - file_grace)
    return MaintenanceReport(
        before=before,
        after=lake_files(con),
        rows_flushed=flushed,
        files_compacted=compacted,
        files_written=written,
        snapshots_expired=expired,
        files_deleted=deleted,
    )
