"""What a lake's Parquet files hold, read from its catalog and their footers (a test helper)."""

from __future__ import annotations

import duckdb

from close_calls_pipeline.core.lake import ATTACH_NAME


def data_files(con: duckdb.DuckDBPyConnection, table: str, schema: str = "main") -> list[str]:
    """The data files of the table's current snapshot."""
    return [
        path
        for (path, *_) in con.execute(
            f"SELECT data_file FROM ducklake_list_files('{ATTACH_NAME}', ?, schema => ?)",
            [table, schema],
        ).fetchall()
    ]


def row_groups(con: duckdb.DuckDBPyConnection, files: list[str]) -> tuple[int, int, int]:
    """(row groups, rows of the largest, rows in all) of these Parquet files."""
    return con.execute(
        "SELECT count(*), max(num_rows), sum(num_rows) FROM (SELECT DISTINCT file_name, "
        "row_group_id, row_group_num_rows AS num_rows FROM parquet_metadata(?))",
        [files],
    ).fetchone()
