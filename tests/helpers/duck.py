"""Reading a warehouse file from a test."""

from __future__ import annotations

from pathlib import Path

import duckdb


def query(db_path: Path | str, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on a read-only connection (timestamps in UTC)."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
