"""Every default of the product, declared once; and where its files go.

Nothing here reads the environment: configuration arrives as values (from a `defs.yaml`, the
command line or a test) and the code falls back to these defaults.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

# The bundled dbt project: `close_calls_pipeline/dbt_project` links to the repository's
# `dbt_project/`, and a wheel carries the files themselves, so the component finds it either way.
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"

# Environment variables the project's own `defs.yaml` and `.env.example` name (the code never
# reads them: Dagster's templates do).
CLOSE_API_KEY_ENV = "CLOSE_API_KEY"
CLOSE_API_BASE_URL_ENV = "CLOSE_API_BASE_URL"
CLOSE_CALLS_DUCKDB_ENV = "CLOSE_CALLS_DUCKDB"
CLOSE_CALLS_LOCK_WAIT_ENV = "CLOSE_CALLS_LOCK_WAIT_SECONDS"
CLOSE_CALLS_LAKE_CATALOG_ENV = "CLOSE_CALLS_LAKE_CATALOG"
CLOSE_CALLS_LAKE_DATA_PATH_ENV = "CLOSE_CALLS_LAKE_DATA_PATH"
CLOSE_CALLS_LAKE_SNAPSHOT_RETENTION_ENV = "CLOSE_CALLS_LAKE_SNAPSHOT_RETENTION_DAYS"

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
# The warehouse file, relative to the Dagster project's root (this repository's, or a user's).
# Runs without an API key (the embedded sandbox) default to their own file, so trying the
# sandbox never writes into the warehouse of a real organization, and setting a key for the
# first time starts a clean one. An explicit path wins for both (the organization check guards it).
DEFAULT_DUCKDB_RELATIVE_PATH = Path("data") / "close_calls.duckdb"
DEFAULT_SANDBOX_DUCKDB_RELATIVE_PATH = Path("data") / "sandbox.duckdb"
# How long a run waits for another process (a notebook, a DuckDB CLI, a stray script) to let go
# of the warehouse file before it fails naming that process: long enough for a quick query or a
# previous process to exit, short enough that a notebook left open fails the run well inside the
# hourly schedule instead of silently delaying it.
DEFAULT_LOCK_WAIT_SECONDS = 120.0
# What the product writes goes under the project folder (the folder `close-calls` runs in, or a
# `dg` project's root), never under the installed package, which may be read-only:
# the project's Dagster instance (run history, schedules), unless DAGSTER_HOME names another,
DAGSTER_HOME_FOLDER = ".dagster_home"
# and dbt's artefacts (manifest, run results, logs, the docs site).
DBT_ARTIFACTS_FOLDER = Path(".close_calls") / "dbt"
# Concurrent requests: enough that Close's rate limit, not latency, is the ceiling.
DEFAULT_WORKERS = 8
# DuckLake (docs/lake.md): how long a snapshot stays readable (time travel) before maintenance
# expires it and removes the files no remaining snapshot needs.
DEFAULT_LAKE_SNAPSHOT_RETENTION_DAYS = 30
# A write of at most this many rows to a lake table is kept in the catalog (DuckLake's data
# inlining) instead of a Parquet file of its own: an hourly run's few changed calls and their
# utterances stay out of the data path until maintenance flushes them into larger files.
LAKE_DATA_INLINING_ROW_LIMIT = 1_000
# The least memory a lake's writer gets, whatever `duckdb_memory_limit` says: DuckLake's updates
# of earlier calls (soft deletes, erasure) allocate buffers of 128 MiB, so at 128 MB every
# hourly run that deleted calls failed on a 100,000-call lake, and 3 of 24 at 256 MB; none at
# 512 MB at 500,000 calls (`close-calls bench --scenario lake`, docs/benchmarks.md).
LAKE_MIN_DUCKDB_MEMORY_LIMIT = "512MB"
# DuckDB memory limits (DuckDB spills to disk beyond them). The sync's and the checks'
# connections land and read batches: 256 MB bounds them. Replacing a batch of changed calls in a
# 1,000,000-call warehouse needs more than 128 MB (the insert after the batch's deletes failed
# there, every hourly run; 192 MB was enough); the sync's peak RSS for a 100k-call backfill is
# 418 MB with 256 MB (351 MB with 128 MB). `dbt build` sorts and joins whole tables: 256 MB makes it several times slower;
# 512 MB builds as fast as 1 GB, and keeps the dbt process under 1 GB of RSS (DuckDB's limit
# leaves out dbt's own Python memory; docs/incremental.md has the measurements).
DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"
DEFAULT_DBT_MEMORY_LIMIT = "512MB"
# Schedules (UTC): the incremental sync hourly, a full reconcile weekly (Sunday 03:00).
DEFAULT_CRON_SCHEDULE = "0 * * * *"
DEFAULT_RECONCILE_CRON_SCHEDULE = "0 3 * * 0"
# Freshness of close/calls: off by default, because the hourly schedule starts stopped: a policy
# would fail for everyone who has not switched it on. Set both when the schedule runs.
DEFAULT_FRESHNESS_FAIL_AFTER_HOURS: int | None = None
DEFAULT_FRESHNESS_WARN_AFTER_HOURS: int | None = None
# The IANA zone of `call_date`, every daily bucket and the report's weekday x hour.
DEFAULT_REPORTING_TIMEZONE = "UTC"
# How far before the high-water mark an incremental run reads the Event Log again. An event that
# becomes visible up to this plus the mark's lag (5 min) after its date_updated is still caught;
# a later one is left to the reconcile (drift_calls). Events an earlier run applied are not
# fetched again, so a long overlap costs Event Log pages only.
DEFAULT_EVENT_OVERLAP_MINUTES = 60.0
MAX_EVENT_OVERLAP_MINUTES = 7 * 24 * 60

# The Close API client: per-attempt timeouts, and the whole budget of a request's failed attempts.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
DEFAULT_READ_TIMEOUT_SECONDS = 15.0
DEFAULT_REQUEST_DEADLINE_SECONDS = 40.0
# The largest `_skip` Close's call list accepts (400 beyond it); the sandbox enforces the same.
CLOSE_MAX_SKIP = 250_000
# A reconcile that would soft-delete more than this share of the live calls stops before
# deleting anything, unless told to go ahead: so many deletes at once are far more likely a
# wrong key or organization, or an API fault, than calls really deleted in Close.
DEFAULT_MAX_RECONCILE_DELETE_SHARE = 0.2

# Lake maintenance (core/lake_maintenance.py), a daily job: a file no snapshot needs is deleted
# once it has waited this long, since a reader mid-query or a run's not yet committed batch may
# still use it;
DEFAULT_LAKE_FILE_GRACE_HOURS = 24.0
# a data file with at least this share of its rows deleted is rewritten, together with its
# neighbours (0: any deleted row). Every run's updates leave small delete files on older data
# files, which the merge of small files cannot touch until they are rewritten.
DEFAULT_LAKE_REWRITE_DELETE_THRESHOLD = 0.0
# Rows per Parquet row group of every file written into a lake (by the sync, dbt, maintenance):
# DuckDB holds a row group in memory per thread while it writes it, and at its default (122,880
# rows) wide rows ran out of memory: maintenance's rewrite of a 500,000-call lake's calls (about
# 3.7 KB a row) at 512 MB and at 1 GB, and dbt's first build of `fct_calls` in a 1,000,000-call
# lake at its 512 MB. At 16,384: 833 MB of RSS for the first, 3.7 s and 692 MB for the second
# (docs/lake.md).
LAKE_ROW_GROUP_ROWS = 16_384
DEFAULT_LAKE_MAINTENANCE_CRON_SCHEDULE = "30 4 * * *"  # UTC, away from the weekly reconcile

# The embedded sandbox Close API used when no API key is configured. Its key is a fixed dummy,
# not a secret: the sandbox listens on loopback only, for the duration of a run.
SANDBOX_API_KEY = "sandbox-key"
SANDBOX_SEED = 42
SANDBOX_CALLS = 3_000
SANDBOX_PORT = 8765  # `close-calls sandbox`'s default port


def resolve_path(raw: str | Path | None, root: Path, default: Path) -> Path:
    """An absolute path: `raw` (relative ones resolved against `root`), else `root / default`.
    Dagster and dbt are always handed the same absolute path."""
    text = str(raw or "").strip()
    path = Path(text).expanduser() if text else default
    return (path if path.is_absolute() else root / path).resolve()


def dbt_target_path(project_root: Path) -> Path:
    """Where dbt writes its artefacts for the project at `project_root`."""
    return (Path(project_root) / DBT_ARTIFACTS_FOLDER).resolve()


def parse_backfill_start(
    text: str | None, now: datetime | None = None, name: str | None = "backfill_start"
) -> datetime | None:
    """Where a first walk starts: an ISO date (midnight UTC) not in the future; None = all
    history. Refused before anything runs: a typo'd year would otherwise walk an empty window
    and commit a high-water mark of now, so later runs would never fetch the history.
    The error names the setting as `name` (None: the caller names it, as argparse does)."""
    if not text:
        return None
    prefix = f"{name}: " if name else ""
    try:
        start = datetime.combine(date.fromisoformat(str(text).strip()), datetime.min.time(), UTC)
    except ValueError:
        raise ValueError(f"{prefix}expected an ISO date (YYYY-MM-DD), got {text!r}") from None
    if start > (now or datetime.now(UTC)):
        raise ValueError(
            f"{prefix}{text} is in the future: no call can be that recent; check the year"
        )
    return start


def default_duckdb_relative_path(has_api_key: bool) -> Path:
    """The warehouse file of a run with an API key, or of a run against the embedded sandbox."""
    return DEFAULT_DUCKDB_RELATIVE_PATH if has_api_key else DEFAULT_SANDBOX_DUCKDB_RELATIVE_PATH


def parse_delete_share(value: str | float | None) -> float:
    """A share of the live calls, between 0 and 1; None or empty: the default."""
    if value is None or str(value).strip() == "":
        return DEFAULT_MAX_RECONCILE_DELETE_SHARE
    try:
        share = float(value)
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1:  # also refuses NaN
        raise ValueError(
            f"max_reconcile_delete_share must be a share between 0 and 1 (0.2 = 20%), got {value!r}"
        )
    return share


def refuse_base_url_without_key(
    api_key: object, base_url: str | None, key_source: str = "CLOSE_API_KEY"
) -> None:
    """A base URL without a key names an API the run could not use; quietly syncing the sandbox
    instead would write another organization's data. So: a clear error, never a fallback."""
    if not api_key and base_url:
        raise ValueError(
            f"{CLOSE_API_BASE_URL_ENV} is set ({base_url}) but CLOSE_API_KEY is not: set "
            f"{key_source}, or unset {CLOSE_API_BASE_URL_ENV} to use the embedded sandbox"
        )


def readonly_copy_path(warehouse_path: str | Path) -> Path:
    """The read-only copy readers open: `close_calls_readonly.duckdb` beside `close_calls.duckdb`
    (`sandbox_readonly.duckdb` beside `sandbox.duckdb`)."""
    path = Path(warehouse_path)
    return path.with_name(f"{path.stem}_readonly{path.suffix or '.duckdb'}")


def readonly_previous_path(warehouse_path: str | Path) -> Path:
    """The copy the last publish replaced, kept hidden beside the copy so that the next publish
    writes only what changed (`core/publish.py`): `.close_calls_readonly.duckdb.previous`."""
    copy = readonly_copy_path(warehouse_path)
    return copy.with_name(f".{copy.name}.previous")
