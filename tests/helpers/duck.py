"""Reading a warehouse (a file, or a DuckLake attached read-only) from a test."""

from __future__ import annotations

from pathlib import Path

import duckdb

from close_calls_pipeline.core.lake import Lake, connect_lake


def query(db_path: Path | str | Lake, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on a read-only connection (timestamps in UTC)."""
    if isinstance(db_path, Lake):
        con = connect_lake(db_path, read_only=True)
    else:
        con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
