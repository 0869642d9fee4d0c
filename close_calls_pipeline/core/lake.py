"""The warehouse as a DuckLake: a catalog (SQLite, PostgreSQL or DuckDB) and Parquet data files
(a folder or S3), for a team that reads and runs from more than one machine (docs/lake.md).

Chosen by two settings, `lake_catalog` and `lake_data_path`; without them the warehouse is one
DuckDB file (`core/warehouse.py`). Inside the lake the contract is the file's: schemas `close`
and `analytics`, the same tables and columns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

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


def lake_of(catalog: str | None, data_path: str | None) -> Lake | None:
    """The lake the two settings name; None (the DuckDB file) unless both are set (the
    settings model refuses one without the other)."""
    return Lake(catalog, data_path) if catalog and data_path else None


# Catalogs in a local file: `sqlite:<path>`, `duckdb:<path>`, or a bare path (a DuckDB catalog).
_FILE_CATALOG = re.compile(r"^(?P<kind>sqlite:|duckdb:)?(?P<path>[^:]+)$")


def catalog_file(catalog: str) -> tuple[str, str] | None:
    """(`sqlite:` / `duckdb:` / "", path) of a catalog kept in a local file; None for a server."""
    match = _FILE_CATALOG.match(catalog)
    return (match["kind"] or "", match["path"]) if match else None


def is_local(data_path: str) -> bool:
    """A data path on this machine's file system (not `s3://` and the like)."""
    return "://" not in data_path


def local_folders(lake: Lake) -> list[Path]:
    """The folders of the lake on this machine (its catalog file's, its data folder): DuckLake
    creates neither."""
    folders = []
    found = catalog_file(lake.catalog)
    if found is not None:
        folders.append(Path(found[1]).expanduser().parent)
    if is_local(lake.data_path):
        folders.append(Path(lake.data_path).expanduser())
    return folders


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# A SQLite catalog is one file that every reader and the writer open. In WAL mode readers never
# wait for the writer; the busy timeout makes a writer (or a reader meeting a WAL checkpoint)
# wait for the file rather than fail with "database is locked".
SQLITE_CATALOG_OPTIONS = ("META_JOURNAL_MODE 'WAL'", "META_BUSY_TIMEOUT 60000")


def attach_statement(lake: Lake, *, read_only: bool = False, name: str = ATTACH_NAME) -> str:
    """The ATTACH of `lake` every connection of ours uses (readers', the writer's, dbt's)."""
    options = [f"DATA_PATH {_literal(lake.data_path)}"]
    if lake.catalog.startswith("sqlite:"):
        options += SQLITE_CATALOG_OPTIONS
    if read_only:
        options.append("READ_ONLY")
    return f"ATTACH {_literal('ducklake:' + lake.catalog)} AS {name} ({', '.join(options)})"


def connect_lake(
    lake: Lake, *, read_only: bool = False, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A UTC session with the lake attached and in use (`USE close_calls`), extensions loaded
    from installed packages; `memory_limit` bounds DuckDB's memory (it spills beyond it)."""
    con = duckdb.connect()
    try:
        extensions.use_packaged_extensions(con)
        con.execute("SET TimeZone = 'UTC'")
        if memory_limit:
            con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        con.execute(attach_statement(lake, read_only=read_only))
        con.execute(f"USE {ATTACH_NAME}")
    except BaseException:
        con.close()
        raise
    return con


def run_lock_anchor(lake: Lake, folder: Path) -> Path:
    """What the run lock of `lake` is keyed by on this machine (`core/locks.py` adds
    `.run.lock`): a name in `folder` from a hash of the catalog, so every run of this project
    that writes the same lake takes the same lock, whatever else differs in its settings."""
    digest = hashlib.sha256(lake.catalog.encode()).hexdigest()[:16]
    return Path(folder) / f"lake-{digest}"
