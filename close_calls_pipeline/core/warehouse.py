"""The DuckDB warehouse: schema, transactional landing of typed batches, and the sync state.

Every function here runs inside the caller's transaction (see `transaction`), so the sync can
commit a batch of data together with the state that describes it, or nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from close_calls_pipeline.core import config, files, sql_text
from close_calls_pipeline.core import lake as lake_mode
from close_calls_pipeline.core.lake import Lake
from close_calls_pipeline.core.records import TIMESTAMP, Rejection


@cache
def read_sql(name: str) -> str:
    return resources.files("close_calls_pipeline.core").joinpath("sql", name).read_text()


def run_script(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: dict | None = None,
    *,
    for_lake: bool = False,
    names: dict[str, str] | None = None,
) -> list[list[tuple]]:
    """Run the statements of one `sql/*.sql` file in order (`$name` parameters from `params`);
    returns each statement's result rows (a DELETE's is its row count). `for_lake`: without
    the column compression DuckLake does not take (its Parquet files choose their own).
    `names`: the SQL for its `{placeholder}`s, for what a parameter cannot be (a table's name),
    quoted by the caller (`sql_text.identifier`)."""
    text = "\n".join(line.split("--", 1)[0] for line in read_sql(name).splitlines())
    if names:
        text = text.format_map(names)
    if for_lake:
        text = _COLUMN_COMPRESSION.sub("", text)
    results = []
    for statement in text.split(";"):
        if statement.strip():
            used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
            results.append(con.execute(statement, used or None).fetchall())
    return results


_COLUMN_COMPRESSION = re.compile(r"\s+USING\s+COMPRESSION\s+\w+", re.IGNORECASE)

# Where the warehouse is: a DuckDB file, or a DuckLake (`core/lake.py`).
Target = str | Path | Lake


def run_lock_anchor(duckdb_path: str | Path, lake: Lake | None) -> Path:
    """What the run lock (`locks.acquire_run_lock`) is keyed by: the warehouse file; for a lake,
    a name from its catalog in the folder the file would be in (the project's `data/`)."""
    if lake is None:
        return Path(duckdb_path)
    return lake_mode.run_lock_anchor(lake, Path(duckdb_path).parent)


def describe(target: Target) -> str:
    """The warehouse for logs and errors (a lake's catalog without any password)."""
    return target.describe() if isinstance(target, Lake) else str(target)


# Rows per DuckDB row group (its default: 122,880), and the calls of a full landing batch (see
# `sync.SyncOptions`). A transaction that appends a full row group has it written straight to the
# file, compressed; a smaller one goes to the WAL, and its rows are written again at the next
# checkpoint. Measured end to end (100k calls): twice the landing speed of 2,500-call batches;
# 16,384-row batches are no faster and take ~90 MB more memory.
ROW_GROUP_SIZE = 8_192


def connect(
    target: Target,
    *,
    memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT,
    checkpoint_threshold: str = "256MB",
    lock_wait_seconds: float | None = None,
    file_mode: str = files.PRIVATE,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating file, folder and schema as needed) with a UTC session.

    The memory limit bounds DuckDB's share of the sync's memory; a larger checkpoint threshold
    than DuckDB's 16 MB default stops every other landed batch from paying for a checkpoint.
    The file is ATTACHed (under its stem, as `duckdb.connect(path)` would name it) because that
    is where DuckDB takes a row group size.

    While another process holds the file (a notebook, the DuckDB CLI), the open is retried for
    up to `lock_wait_seconds` (default `config.DEFAULT_LOCK_WAIT_SECONDS`), logged, then fails
    with a `locks.WarehouseLockedError` naming that process (see `core/locks.py`).

    The folder, the file and its WAL are created owner-only (`file_mode`, see `core/files.py`).

    `target` a `Lake`: the lake, attached for writing (see `_connect_lake`); the file's options
    do not apply there."""
    from close_calls_pipeline.core import locks

    if isinstance(target, Lake):
        for folder in lake_mode.local_folders(target):
            files.private_dir(folder, file_mode)
        return _connect_lake(target, memory_limit)
    path = target
    files.private_dir(Path(path).parent, file_mode)
    con = duckdb.connect()
    literal = sql_text.literal(str(path))
    name = sql_text.identifier(Path(path).stem)
    try:
        with files.restrictive_umask(file_mode):  # a new file is born private
            locks.wait_for_warehouse(
                lambda: con.execute(
                    f"ATTACH {literal} AS {name} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
                ),
                path,
                lock_wait_seconds,
            )
        files.restrict(path, file_mode)  # and one an earlier version made is made so
        con.execute(f"USE {name}")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
        con.execute("SET preserve_insertion_order = false")
        run_script(con, "schema.sql")
    except duckdb.Error as error:
        con.close()
        if _CORRUPT.search(str(error)):
            raise WarehouseCorruptError(path, error) from None
        raise
    except BaseException:
        con.close()
        raise
    return con


_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?)(i?)B\s*$", re.IGNORECASE)


def _bytes(size: str) -> float | None:
    """A DuckDB memory size ('128MB', '1.5GiB') in bytes; None for what this does not read."""
    found = _SIZE.match(size)
    if found is None:
        return None
    number, prefix, binary = found.groups()
    return float(number) * (1024 if binary else 1000) ** " KMGT".index(prefix.upper() or " ")


def _connect_lake(lake: Lake, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """The writer's connection to a lake (small writes inlined in the catalog: `lake.attach_options`),
    with at least `config.LAKE_MIN_DUCKDB_MEMORY_LIMIT`; the schema is made, in one snapshot,
    once per DuckDB instance (`lake.one_instance_per_lake`)."""
    floor = config.LAKE_MIN_DUCKDB_MEMORY_LIMIT
    if (_bytes(memory_limit) or 0) < (_bytes(floor) or 0):
        memory_limit = floor
    return lake_mode.connect_lake(lake, memory_limit=memory_limit, prepare=_prepare_lake)


def _prepare_lake(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET preserve_insertion_order = false")
    with transaction(con):
        run_script(con, "schema.sql", for_lake=True)
    lake_mode.bound_row_groups(con)  # before dbt's first build of the marts


# What DuckDB says of a file that is not a database (garbage, cut at the start) or whose blocks
# fail their checksums.
_CORRUPT = re.compile(r"not a valid DuckDB database file|Corrupt database file", re.IGNORECASE)


class WarehouseCorruptError(RuntimeError):
    """The warehouse file is not a DuckDB database DuckDB can read: it says what to do instead."""

    def __init__(self, path: str | Path, error: BaseException):
        self.path = str(path)
        copy = config.readonly_copy_path(path)
        detail = " ".join(str(error).split())
        start_anew = (
            f"move {self.path} aside to start a new warehouse (the next run syncs the history "
            "again)"
        )
        if copy.exists():
            remedy = (
                f"Restore it from the read-only copy the last run published (cp {copy} "
                f"{self.path}), or {start_anew}."
            )
        else:
            remedy = f"There is no read-only copy ({copy}) to restore it from: {start_anew}."
        # One line: `close-calls run` and the Dagster UI show the first line of an error.
        super().__init__(
            f"the warehouse {self.path} is damaged: DuckDB cannot read it ({detail}). {remedy}"
        )


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    """Arrow tables readable from SQL under the given names for the duration of the block."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            # In an aborted transaction this fails (and would hide why); the rollback drops it.
            with suppress(duckdb.TransactionException):
                con.unregister(name)


@dataclass(frozen=True)
class LandedCounts:
    inserted: int = 0  # ids new to the table
    updated: int = 0  # ids that were there from an earlier run, with another payload
    utterances: int = 0  # utterance rows written, less those of copies the same run replaced
    drift: int = 0  # changed calls last updated in Close before `drift_before`


def land_calls(
    con: duckdb.DuckDBPyConnection,
    calls: pa.Table,
    utterances: pa.Table,
    *,
    own_since: datetime,
    drift_before: datetime | None = None,
    walk_hashes: bool = False,
) -> LandedCounts:
    """Upsert a batch of typed calls (unique ids) and replace the utterances of changed calls.

    Every landing compares the batch with the table by id, so a call the sync meets twice (a
    split window, a resumed walk, offsets shifted by a new call) is one row at every moment.
    Rows loaded since `own_since` are this run's own: replacing one is neither an update nor
    drift, and its utterances are not counted twice. `walk_hashes`: the table holds only calls
    of this walk (a backfill), whose id hashes are in close.sync_walk_hashes: a batch with none
    of them is new, known without probing the table."""
    if calls.num_rows == 0:
        return LandedCounts()
    numbered = {"change_seq": next_change_seq(con)}  # before any row is removed
    with registered(con, batch_calls=calls, batch_utterances=utterances):
        found = 1
        if walk_hashes:
            found = run_script(con, "find_walk_repeats.sql")[0][0][0]
        if found:
            run_script(con, "find_existing_calls.sql")
            (found,) = con.execute("SELECT count(*) FROM existing_calls").fetchall()[0]
        if not found:  # all new (a backfill, nearly always): append as is
            run_script(con, "append_calls.sql", numbered)
            drift = 0
            if drift_before is not None:
                (drift,) = con.execute(
                    "SELECT count(*) FROM batch_calls WHERE date_updated < ?", [drift_before]
                ).fetchall()[0]
            return LandedCounts(calls.num_rows, 0, utterances.num_rows, drift)
        run_script(
            con, "find_changed_calls.sql", {"own_since": own_since, "drift_before": drift_before}
        )
        inserted, updated, drift, replaced = con.execute(
            "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new AND NOT "
            "is_own), count(*) FILTER (WHERE is_drift AND NOT is_own), count(*) FILTER (WHERE "
            "NOT is_new) FROM changed_calls"
        ).fetchall()[0]
        taken_back = 0
        if replaced:
            own_utterances = run_script(con, "remove_replaced_calls.sql")[0]
            taken_back = own_utterances[0][0]
        if inserted or replaced:
            run_script(con, "insert_changed_calls.sql", numbered)
        (written,) = con.execute(
            "SELECT count(*) FROM batch_utterances WHERE call_id IN (SELECT id FROM changed_calls)"
        ).fetchall()[0]
    return LandedCounts(inserted, updated, written - taken_back, drift)


def next_change_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The number of the changes the caller's transaction is about to make to close.calls
    (`_change_seq`, which the dbt build reads), from the counter row it updates: above every
    number stored, so above every number a build has recorded. One writer at a time (the run
    lock) keeps the numbers in commit order; a DuckDB file and a DuckLake number alike (a
    DuckLake has no sequences), and two writers in one lake conflict on the row."""
    con.execute(
        "UPDATE close.call_change_counter SET last_change_seq = "
        "greatest(last_change_seq, (SELECT coalesce(max(_change_seq), 0) FROM close.calls)) + 1"
    )
    (number,) = con.execute("SELECT last_change_seq FROM close.call_change_counter").fetchone()
    return int(number)


def mark_deleted(con: duckdb.DuckDBPyConnection, deleted: dict[str, datetime]) -> int:
    """Soft-delete calls by id (id -> when Close deleted it); returns how many were live."""
    if not deleted:
        return 0
    table = pa.table(
        {
            "id": pa.array(list(deleted), pa.string()),
            "deleted_at": pa.array(list(deleted.values()), TIMESTAMP),
        }
    )
    with registered(con, deleted_batch=table):
        con.execute("CREATE OR REPLACE TEMP TABLE deleted_calls AS SELECT * FROM deleted_batch")
    run_script(con, "mark_deleted.sql", {"change_seq": next_change_seq(con)})
    (count,) = con.execute("SELECT count(*) FROM newly_deleted").fetchall()[0]
    # What Close deleted keeps no personal data here either (docs/privacy.md).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE erased_calls AS SELECT DISTINCT id FROM deleted_calls"
    )
    erase_listed_calls(con)
    return count


# Stands in for a quarantined payload that could not be policed or was erased.
WITHHELD_PAYLOAD = "[withheld: personal data]"


def erase_listed_calls(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """Remove the personal fields of the calls in the temp table `erased_calls` (id), inside
    the caller's transaction; returns (calls, utterance texts, quarantined payloads) changed."""
    results = run_script(con, "erase_calls.sql", {"withheld": WITHHELD_PAYLOAD})
    return results[0][0][0], results[2][0][0], results[3][0][0]


def unseen_live_calls(
    con: duckdb.DuckDBPyConnection, run_id: str, window_start: datetime, window_end: datetime
) -> list[str]:
    """Live calls of [window_start, window_end) that the walk `run_id` did not see."""
    (rows,) = run_script(
        con,
        "reconcile_unseen.sql",
        {"run_id": run_id, "window_start": window_start, "window_end": window_end},
    )
    return [call_id for (call_id,) in rows]


def record_rejections(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    object_type: str,
    rejections: list[Rejection],
    rejected_at: datetime,
) -> None:
    """Quarantine records that could not be typed; the same payload is kept once, however often
    a re-run meets it."""
    for r in rejections:
        con.execute(
            "INSERT INTO close.rejected_records "
            "(run_id, object_type, object_id, reason, payload, rejected_at, payload_bytes) "
            "SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS ("
            " SELECT 1 FROM close.rejected_records"
            " WHERE object_type = ? AND object_id IS NOT DISTINCT FROM ? AND payload = ?)",
            [
                run_id, object_type, r.object_id, r.reason, r.payload, rejected_at, r.raw,
                object_type, r.object_id, r.payload,
            ],
        )  # fmt: skip


def replace_table(con: duckdb.DuckDBPyConnection, table_name: str, rows: pa.Table) -> None:
    """Replace a reference table (outcomes, users) with a fresh full copy."""
    con.execute(f"DELETE FROM close.{table_name}")
    with registered(con, fresh_rows=rows):
        con.execute(f"INSERT INTO close.{table_name} BY NAME SELECT * FROM fresh_rows")


# --- sync state --------------------------------------------------------------------------------------


def high_water_mark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute(
        "SELECT high_water_mark_after FROM close.sync_state "
        "WHERE high_water_mark_after IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


SYNC_STATE_COLUMNS = (
    "run_id", "mode", "started_at", "finished_at", "high_water_mark_before",
    "high_water_mark_after", "calls_inserted", "calls_updated", "calls_deleted",
    "utterances_written", "records_rejected", "records_repaired", "drift_calls", "requests",
    "rate_limited", "retries", "seconds_waited",
)  # fmt: skip


def append_sync_state(con: duckdb.DuckDBPyConnection, summary: dict) -> None:
    columns = SYNC_STATE_COLUMNS
    con.execute(
        f"INSERT INTO close.sync_state ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})",
        [summary[c] for c in columns],
    )


Window = tuple[datetime, datetime]


@dataclass
class WalkPlan:
    run_id: str
    mode: str
    started_at: datetime  # server time
    high_water_mark: datetime  # the mark the walk sets when it completes
    windows: list[Window]  # every window of the plan, done or not
    pending: list[Window]
    landed_down_to: dict[Window, datetime]  # of pending windows that have landed some calls
    loaded_since: datetime  # this machine's clock when the walk started: its rows are newer
    totals: dict[str, int]  # landed so far, by the sync_walk_progress column
    legacy: bool = False  # planned by a release that kept no progress (it appended)


WALK_TOTALS = (
    "calls_inserted", "calls_updated", "utterances_written", "records_rejected",
    "records_repaired", "drift_calls",
)  # fmt: skip


def load_walk_plan(con: duckdb.DuckDBPyConnection) -> WalkPlan | None:
    rows = con.execute(
        "SELECT run_id, mode, started_at, high_water_mark, window_start, window_end, done, "
        "landed_down_to FROM close.sync_windows ORDER BY window_start"
    ).fetchall()
    if not rows:
        return None
    run_id, mode, started_at, mark = rows[0][:4]
    progress = con.execute(
        f"SELECT loaded_since, {', '.join(WALK_TOTALS)} FROM close.sync_walk_progress "
        "WHERE run_id = ?",
        [run_id],
    ).fetchall()
    loaded_since, *totals = progress[0] if progress else (started_at, *[0] * len(WALK_TOTALS))
    return WalkPlan(
        run_id, mode, started_at, mark,
        windows=[(r[4], r[5]) for r in rows],
        pending=[(r[4], r[5]) for r in rows if not r[6]],
        landed_down_to={(r[4], r[5]): r[7] for r in rows if not r[6] and r[7] is not None},
        loaded_since=loaded_since,
        totals=dict(zip(WALK_TOTALS, totals)),
        legacy=not progress,
    )  # fmt: skip


def save_walk_plan(con: duckdb.DuckDBPyConnection, plan: WalkPlan) -> None:
    clear_walk_plan(con)
    con.executemany(
        "INSERT INTO close.sync_windows "
        "(run_id, mode, started_at, high_water_mark, window_start, window_end, done) "
        "VALUES (?, ?, ?, ?, ?, ?, false)",
        [
            (plan.run_id, plan.mode, plan.started_at, plan.high_water_mark, start, end)
            for start, end in plan.windows
        ],
    )
    start_walk_progress(con, plan)


def start_walk_progress(con: duckdb.DuckDBPyConnection, plan: WalkPlan) -> None:
    con.execute(
        f"INSERT INTO close.sync_walk_progress (run_id, loaded_since, {', '.join(WALK_TOTALS)}) "
        f"VALUES (?, ?{', 0' * len(WALK_TOTALS)})",
        [plan.run_id, plan.loaded_since],
    )


def remove_duplicate_calls(con: duckdb.DuckDBPyConnection) -> int:
    """Keep one copy (the last loaded) of each call landed more than once by a walk of a release
    that appended; returns the copies removed."""
    _, _, calls = run_script(con, "remove_duplicate_calls.sql")
    return calls[0][0]


WINDOW_PROGRESS = pa.schema(
    [("window_start", TIMESTAMP), ("landed_down_to", TIMESTAMP), ("done", pa.bool_()),
     ("out_of_order", pa.bool_())]
)  # fmt: skip


def advance_walk(
    con: duckdb.DuckDBPyConnection, run_id: str, windows: pa.Table, landed: dict[str, int]
) -> None:
    """Record what a walk batch landed: per window (`WINDOW_PROGRESS` rows) how far down it
    reached, whether it is done, whether it must resume from its start; and its counts."""
    if windows.num_rows:
        with registered(con, batch_windows=windows):
            run_script(con, "advance_windows.sql")
    con.execute(
        "UPDATE close.sync_walk_progress SET "
        + ", ".join(f"{c} = {c} + ?" for c in WALK_TOTALS)
        + " WHERE run_id = ?",
        [landed.get(c, 0) for c in WALK_TOTALS] + [run_id],
    )


def record_seen_ids(con: duckdb.DuckDBPyConnection, run_id: str, ids: list[str]) -> None:
    if ids:
        seen = pa.table({"run_id": pa.array([run_id] * len(ids)), "id": pa.array(ids, pa.string())})
        with registered(con, seen_batch=seen):
            con.execute("INSERT INTO close.sync_seen_ids SELECT run_id, id FROM seen_batch")


def clear_walk_plan(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM close.sync_windows")
    con.execute("DELETE FROM close.sync_seen_ids")
    con.execute("DELETE FROM close.sync_walk_progress")
    con.execute("DELETE FROM close.sync_walk_hashes")


def remember_walk_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """The id hashes of every call in the table (a backfill adopting rows it did not hash)."""
    con.execute("DELETE FROM close.sync_walk_hashes")
    con.execute("INSERT INTO close.sync_walk_hashes SELECT hash(id) FROM close.calls")


# --- applied Event Log entries ------------------------------------------------------------------------


def applied_events(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(event id, date_updated as written) of the events earlier runs applied and still keep."""
    rows = con.execute("SELECT event_id, date_updated FROM close.sync_applied_events").fetchall()
    return set(rows)


def record_applied_events(
    con: duckdb.DuckDBPyConnection,
    events: list[tuple[str, str, datetime]],
    keep_from: datetime,
) -> None:
    """Remember the events (id, date_updated as written, parsed) a run applied, and forget those
    older than `keep_from`, which no later re-scan reads."""
    con.execute("DELETE FROM close.sync_applied_events WHERE updated_at < ?", [keep_from])
    events = [e for e in events if e[2] >= keep_from]
    if events:
        table = pa.table(
            {
                "event_id": pa.array([e[0] for e in events], pa.string()),
                "date_updated": pa.array([e[1] for e in events], pa.string()),
                "updated_at": pa.array([e[2] for e in events], TIMESTAMP),
            }
        )
        with registered(con, applied_batch=table):
            con.execute(
                "INSERT INTO close.sync_applied_events SELECT * FROM applied_batch AS a "
                "WHERE NOT EXISTS (SELECT 1 FROM close.sync_applied_events AS e "
                "WHERE e.event_id = a.event_id AND e.date_updated = a.date_updated)"
            )
