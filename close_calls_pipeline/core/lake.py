"""The warehouse as a DuckLake: a catalog (SQLite, PostgreSQL or DuckDB) and Parquet data files
(a folder or S3), for a team that reads and runs from more than one machine (docs/lake.md).

Chosen by two settings, `lake_catalog` and `lake_data_path`; without them the warehouse is one
DuckDB file (`core/warehouse.py`). Inside the lake the contract is the file's: schemas `close`
and `analytics`, the same tables and columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from close_calls_pipeline.core import extensions

# The name the lake is attached under in our connections, and in the docs' recipes.
ATTACH_NAME = "close_calls"


@dataclass(frozen=True)
class Lake:
    """Where a lake lives. `catalog` is what DuckLake's ATTACH takes after `ducklake:`
    (`sqlite:/srv/calls/catalog.sqlite`, `postgres:dbname=calls host=db`), `data_path` a folder
    or `s3://bucket/prefix`. Neither holds a secret: passwords and keys come from the environment
    (libpq's PGPASSWORD, AWS_* variables) when a connection is made."""

    catalog: str
    data_path: str

    def describe(self) -> str:
        """For logs and errors: the catalog without any `password=...` a user put in it."""
        words = [w for w in self.catalog.split() if not w.lower().startswith("password=")]
        return f"DuckLake ducklake:{' '.join(words)} (data {self.data_path})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def attach_statement(
    lake: Lake,
    *,
    read_only: bool = False,
    name: str = ATTACH_NAME,
    snapshot_time: datetime | None = None,
) -> str:
    """`snapshot_time`: the lake as it was then (time travel; read-only)."""
    options = [f"DATA_PATH {_literal(lake.data_path)}"]
    if read_only:
        options.append("READ_ONLY")
    if snapshot_time is not None:
        options.append(f"SNAPSHOT_TIME {_literal(snapshot_time.isoformat())}")
    return f"ATTACH {_literal('ducklake:' + lake.catalog)} AS {name} ({', '.join(options)})"


def connect_lake(lake: Lake, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A UTC session with the lake attached and in use (`USE close_calls`), extensions loaded
    from installed packages."""
    con = duckdb.connect()
    try:
        extensions.use_packaged_extensions(con)
        con.execute("SET TimeZone = 'UTC'")
        con.execute(attach_statement(lake, read_only=read_only))
        con.execute(f"USE {ATTACH_NAME}")
    except BaseException:
        con.close()
        raise
    return con
