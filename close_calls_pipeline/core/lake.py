"""The warehouse as a DuckLake: a catalog (SQLite, PostgreSQL or DuckDB) and Parquet data files
(a folder or S3), for a team that reads and runs from more than one machine (docs/lake.md).

Chosen by two settings, `lake_catalog` and `lake_data_path`; without them the warehouse is one
DuckDB file (`core/warehouse.py`). Inside the lake the contract is the file's: schemas `close`
and `analytics`, the same tables and columns.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from close_calls_pipeline.core import config, extensions
from close_calls_pipeline.core.sql_text import literal

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


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else literal(str(value))


def attach_options(lake: Lake) -> dict[str, Any]:
    """The DuckLake ATTACH options of every connection of ours (readers', the writer's, dbt's).

    A SQLite catalog is one file that every reader and the writer open. In WAL mode readers never
    wait for the writer; the busy timeout makes a writer (or a reader meeting a WAL checkpoint)
    wait for the file rather than fail with "database is locked"."""
    # A write of few rows (an hourly run's changed calls) stays in the catalog rather than
    # becoming a tiny Parquet file, for dbt's writes too. (An ATTACH option: DuckLake 1.5.5's
    # persisted `set_option` crashes on some existing lakes.)
    options: dict[str, Any] = {
        "data_path": lake.data_path,
        "data_inlining_row_limit": config.LAKE_DATA_INLINING_ROW_LIMIT,
    }
    if lake.catalog.startswith("sqlite:"):
        options |= {"meta_journal_mode": "WAL", "meta_busy_timeout": 60000}
    return options


def bound_row_groups(
    con: duckdb.DuckDBPyConnection, rows: int = config.LAKE_ROW_GROUP_ROWS
) -> None:
    """Every Parquet file written into the lake from now on, by any writer (the sync, dbt,
    maintenance), has row groups of about `rows` rows (config.LAKE_ROW_GROUP_ROWS says why): a
    lake-wide option the catalog keeps (not an ATTACH option: DuckLake has none), set only when
    it differs, since setting it is a commit."""
    current = con.execute(
        f"SELECT value FROM {ATTACH_NAME}.options() "
        "WHERE option_name = 'parquet_row_group_size' AND scope = 'GLOBAL'"
    ).fetchone()
    if current is None or current[0] != str(int(rows)):
        con.execute(f"CALL {ATTACH_NAME}.set_option('parquet_row_group_size', ?)", [int(rows)])


def attach_statement(
    lake: Lake,
    *,
    read_only: bool = False,
    name: str = ATTACH_NAME,
    snapshot_time: datetime | None = None,
) -> str:
    """`snapshot_time`: the lake as it was then (time travel; read-only)."""
    options = [f"{key.upper()} {_sql_value(value)}" for key, value in attach_options(lake).items()]
    if read_only:
        options.append("READ_ONLY")
    if snapshot_time is not None:
        options.append(f"SNAPSHOT_TIME {literal(snapshot_time.isoformat())}")
    return f"ATTACH {literal('ducklake:' + lake.catalog)} AS {name} ({', '.join(options)})"


# The name of the S3 secret our connections create (temporary: in memory, never on disk).
S3_SECRET_NAME = "close_calls_lake_s3"
# The standard AWS variables the S3 secret is made from (the AWS CLI's and SDKs' names).
S3_CREDENTIAL_VARIABLES = {
    "key_id": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}
_PASSWORD = re.compile(r"""(password\s*=\s*)('[^']*'|[^\s"']+)""", re.IGNORECASE)


def is_s3(data_path: str) -> bool:
    return data_path.lower().startswith("s3://")


def s3_location(environ: Mapping[str, str]) -> dict[str, Any]:
    """The non-secret half of the S3 secret: region, and for a custom endpoint (MinIO, moto,
    R2: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL) its host, path-style URLs and whether it
    speaks TLS. Without an endpoint: AWS itself, DuckDB's defaults."""
    settings: dict[str, Any] = {}
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        settings["endpoint"] = (parts.netloc + parts.path).rstrip("/")
        settings["url_style"] = "path"
        settings["use_ssl"] = parts.scheme != "http"
    return settings


# DuckDB's S3 writes upload a file in parts of `s3_uploader_max_filesize` / 10,000 parts, each
# buffered in memory: 80 MB by default, more than the sync's memory limit (config:
# DEFAULT_DUCKDB_MEMORY_LIMIT), which fails the first batch. The smallest size DuckDB accepts
# gives parts of 5 MiB (S3's minimum) and still allows a 50 GB file.
S3_UPLOADER_MAX_FILESIZE = "50GB"


def _s3_bucket(data_path: str) -> str:
    return "s3://" + data_path[len("s3://") :].split("/", 1)[0]


def s3_secret_statement(data_path: str, environ: Mapping[str, str]) -> str:
    """`CREATE TEMPORARY SECRET` for the data path's bucket from the AWS variables in `environ`.
    Temporary: it lives in this connection's memory only, and `duckdb_secrets()` shows it with
    the secret and token redacted."""
    options: dict[str, Any] = {"type": "s3", "scope": _s3_bucket(data_path)}
    for option, variable in S3_CREDENTIAL_VARIABLES.items():
        if environ.get(variable):
            options[option] = environ[variable]
    options.update(s3_location(environ))
    body = ", ".join(f"{name.upper()} {_sql_value(value)}" for name, value in options.items())
    return f"CREATE OR REPLACE TEMPORARY SECRET {S3_SECRET_NAME} ({body})"


def dbt_s3_location(lake: Lake, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The non-secret half of the same secret for dbt (the var `lake_s3`; None: the data path
    is not S3). profiles.yml adds the keys from dbt's own environment, so they never pass
    through `--vars`, dbt's logs or a written file."""
    if not is_s3(lake.data_path):
        return None
    return {"type": "s3", "scope": _s3_bucket(lake.data_path), **s3_location(environ)}


def redact(message: str, environ: Mapping[str, str]) -> str:
    """An error message without a catalog `password=...` or any credential value from
    `environ` (DuckDB's attach errors repeat the connection string)."""
    message = _PASSWORD.sub(r"\1***", message)
    for variable in (*S3_CREDENTIAL_VARIABLES.values(), "PGPASSWORD"):
        value = environ.get(variable)
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    return message


def connect_lake(
    lake: Lake,
    *,
    read_only: bool = False,
    memory_limit: str | None = None,
    environ: Mapping[str, str] | None = None,
    snapshot_time: datetime | None = None,
    prepare: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A UTC session with the lake attached and in use (`USE close_calls`), extensions loaded
    from installed packages; `memory_limit` bounds DuckDB's memory (it spills beyond it);
    `snapshot_time`: the lake as it was then (read-only); `prepare` runs once per DuckDB
    instance, before the connection is handed out.

    Credentials come from `environ` (default: this process's environment): for an `s3://` data
    path, a temporary S3 secret from the AWS variables (`s3_secret_statement`); for a
    PostgreSQL catalog, libpq reads PGPASSWORD or ~/.pgpass itself. An error says what failed
    without a password or key in it.

    Inside `one_instance_per_lake()` the connection is a new connection to a DuckDB instance
    shared with the other connections to the same lake opened the same way."""
    environ = os.environ if environ is None else environ
    secret = s3_secret_statement(lake.data_path, environ) if is_s3(lake.data_path) else None
    try:
        with _sharing_lock:
            key = (lake, read_only, snapshot_time, _digest(secret), prepare)
            instance = _shared.get(key) if _shared is not None else None
            if instance is None:
                instance = _new_instance(lake, read_only, snapshot_time, secret, prepare)
                if _shared is None:
                    return _in_use(instance, memory_limit)
                _shared[key] = instance
        return _in_use(instance.cursor(), memory_limit)
    except duckdb.Error as error:
        failure = error
    # Raised outside the handler, so the original (unredacted) error is not its context.
    raise type(failure)(redact(str(failure), environ))


def _new_instance(
    lake: Lake,
    read_only: bool,
    snapshot_time: datetime | None,
    secret: str | None,
    prepare: Callable[[duckdb.DuckDBPyConnection], None] | None,
) -> duckdb.DuckDBPyConnection:
    """A new DuckDB instance with the lake attached: it loads DuckLake and the catalog's
    extension, whose signatures DuckDB checks by hashing each file (about 0.13 s)."""
    con = duckdb.connect()
    try:
        extensions.use_packaged_extensions(con)
        con.execute("SET TimeZone = 'UTC'")
        if secret is not None:
            con.execute(secret)
            con.execute(f"SET s3_uploader_max_filesize = {literal(S3_UPLOADER_MAX_FILESIZE)}")
        statement = attach_statement(lake, read_only=read_only, snapshot_time=snapshot_time)
        con.execute(statement)
        con.execute(f"USE {ATTACH_NAME}")
        if prepare is not None:
            prepare(con)
    except BaseException:
        con.close()
        raise
    return con


def _in_use(con: duckdb.DuckDBPyConnection, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    """The session settings of one connection (the memory limit is the instance's)."""
    try:
        con.execute(f"USE {ATTACH_NAME}")
        if memory_limit:
            con.execute(f"SET memory_limit = {literal(memory_limit)}")
    except BaseException:
        con.close()
        raise
    return con


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


# The DuckDB instances of `one_instance_per_lake`, by the way they were opened (lake, read_only,
# snapshot_time, secret digest, prepare); None outside it.
_shared: dict[tuple[Any, ...], duckdb.DuckDBPyConnection] | None = None
_sharing_depth = 0
_sharing_lock = threading.RLock()


@contextmanager
def one_instance_per_lake() -> Iterator[None]:
    """While open, `connect_lake` hands out connections to one DuckDB instance per lake (and
    way of opening it) instead of a new instance each time: a new one costs about 0.13 s (see
    `_new_instance`), and a run opens about ten. The instances are closed, with any connection
    still open on them, when the outermost `with` ends: a run's, whose connections end with it
    (the Dagster `WarehouseResource`, an Airflow task, `close-calls run`'s summary). Each
    connection keeps its own transaction; the memory limit is the one the last connection set
    (it is the instance's)."""
    global _shared, _sharing_depth
    with _sharing_lock:
        _sharing_depth += 1
        if _shared is None:
            _shared = {}
    try:
        yield
    finally:
        with _sharing_lock:
            _sharing_depth -= 1
            if _sharing_depth == 0:
                instances, _shared = list((_shared or {}).values()), None
                for instance in instances:
                    instance.close()


def run_lock_anchor(lake: Lake, folder: Path) -> Path:
    """What the run lock of `lake` is keyed by on this machine (`core/locks.py` adds
    `.run.lock`): a name in `folder` from a hash of the catalog, so every run of this project
    that writes the same lake takes the same lock, whatever else differs in its settings."""
    digest = hashlib.sha256(lake.catalog.encode()).hexdigest()[:16]
    return Path(folder) / f"lake-{digest}"
