"""The DuckDB warehouse: schema, transactional landing of typed batches, and the sync state.

Every function here runs inside the caller's transaction (see `transaction`), so the sync can
commit a batch of data together with the state that describes it, or nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from close_calls_pipeline.core import config
from close_calls_pipeline.core.records import TIMESTAMP, Rejection


@cache
def read_sql(name: str) -> str:
    return resources.files("close_calls_pipeline.core").joinpath("sql", name).read_text()


def run_script(
    con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None
) -> list[list[tuple]]:
    """Run the statements of one `sql/*.sql` file in order (`$name` parameters from `params`);
    returns each statement's result rows (a DELETE's is its row count)."""
    text = "\n".join(line.split("--", 1)[0] for line in read_sql(name).splitlines())
    results = []
    for statement in text.split(";"):
        if statement.strip():
            used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
            results.append(con.execute(statement, used or None).fetchall())
    return results


# Rows per DuckDB row group (its default: 122,880), and the calls of a full landing batch (see
# `sync.SyncOptions`). A transaction that appends a full row group has it written straight to the
# file, compressed; a smaller one goes to the WAL, and its rows are written again at the next
# checkpoint. Measured end to end (100k calls): twice the landing speed of 2,500-call batches;
# 16,384-row batches are no faster and take ~90 MB more memory.
ROW_GROUP_SIZE = 8_192


def connect(
    path: str,
    *,
    memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT,
    checkpoint_threshold: str = "256MB",
    lock_wait_seconds: float | None = None,
    logger=None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating file, folder and schema as needed) with a UTC session.

    The memory limit bounds DuckDB's share of the sync's memory; a larger checkpoint threshold
    than DuckDB's 16 MB default stops every other landed batch from paying for a checkpoint.
    The file is ATTACHed (under its stem, as `duckdb.connect(path)` would name it) because that
    is where DuckDB takes a row group size.

    While another process holds the file (a notebook, the DuckDB CLI), the open is retried for
    up to `lock_wait_seconds` (default `config.DEFAULT_LOCK_WAIT_SECONDS`), logged (also to `logger`,
    a `logging.Logger`, when given), then fails with a `locks.WarehouseLockedError` naming that
    process (see `core/locks.py`)."""
    from close_calls_pipeline.core import locks

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    literal = "'" + str(path).replace("'", "''") + "'"
    name = '"' + Path(path).stem.replace('"', '""') + '"'
    try:
        locks.wait_for_warehouse(
            lambda: con.execute(f"ATTACH {literal} AS {name} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})"),
            path,
            lock_wait_seconds,
            logger=logger,
        )
    except BaseException:
        con.close()
        raise
    con.execute(f"USE {name}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
    con.execute("SET preserve_insertion_order = false")
    run_script(con, "schema.sql")
    return con


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


@dataclass
class LandedCounts:
    inserted: int = 0
    updated: int = 0
    utterances: int = 0


def land_calls(con: duckdb.DuckDBPyConnection, calls: pa.Table, utterances: pa.Table) -> LandedCounts:
    """Upsert a batch of typed calls (unique ids) and replace the utterances of changed calls."""
    if calls.num_rows == 0:
        return LandedCounts()
    with registered(con, batch_calls=calls, batch_utterances=utterances):
        run_script(con, "find_changed_calls.sql")
        inserted, updated = con.execute(
            "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM changed_calls"
        ).fetchall()[0]
        if updated:
            run_script(con, "remove_replaced_calls.sql")
        if inserted or updated:
            run_script(con, "insert_changed_calls.sql")
        (written,) = con.execute(
            "SELECT count(*) FROM batch_utterances WHERE call_id IN (SELECT id FROM changed_calls)"
        ).fetchall()[0]
    return LandedCounts(inserted, updated, written)


def append_calls(con: duckdb.DuckDBPyConnection, calls: pa.Table, utterances: pa.Table) -> LandedCounts:
    """Append a batch of typed calls (unique ids) and their utterances without looking for them
    in the table: a backfill's landing, which `remove_duplicate_calls` completes."""
    with registered(con, batch_calls=calls, batch_utterances=utterances):
        run_script(con, "append_calls.sql")
    return LandedCounts(calls.num_rows, 0, utterances.num_rows)


def remove_duplicate_calls(con: duckdb.DuckDBPyConnection) -> LandedCounts:
    """Keep one copy (the last loaded) of each call an append-only backfill landed more than
    once; returns the copies and utterances removed."""
    _, utterances, calls = run_script(con, "remove_duplicate_calls.sql")
    return LandedCounts(inserted=calls[0][0], utterances=utterances[0][0])


def mark_deleted(con: duckdb.DuckDBPyConnection, deleted: dict[str, datetime]) -> int:
    """Soft-delete calls by id (id -> when Close deleted it); returns how many were live."""
    table = pa.table(
        {"id": pa.array(list(deleted), pa.string()),
         "deleted_at": pa.array(list(deleted.values()), TIMESTAMP)}
    )
    with registered(con, deleted_batch=table):
        con.execute("CREATE OR REPLACE TEMP TABLE deleted_calls AS SELECT * FROM deleted_batch")
    return _apply_deletes(con)


def mark_unseen_deleted(
    con: duckdb.DuckDBPyConnection, run_id: str, window_start: datetime, window_end: datetime,
    deleted_at: datetime,
) -> int:
    """After a complete walk of [window_start, window_end), soft-delete the live calls it missed."""
    con.execute("CREATE OR REPLACE TEMP TABLE deleted_calls (id VARCHAR, deleted_at TIMESTAMPTZ)")
    run_script(con, "reconcile_unseen.sql", {
        "run_id": run_id, "window_start": window_start, "window_end": window_end,
        "deleted_at": deleted_at,
    })
    return _apply_deletes(con)


def _apply_deletes(con: duckdb.DuckDBPyConnection) -> int:
    run_script(con, "mark_deleted.sql")
    (count,) = con.execute("SELECT count(*) FROM newly_deleted").fetchall()[0]
    return count


def record_rejections(
    con: duckdb.DuckDBPyConnection, run_id: str, object_type: str, rejections: list[Rejection],
    rejected_at: datetime,
) -> None:
    """Quarantine records that could not be typed; the same payload is kept once, however often
    a re-run meets it."""
    for r in rejections:
        con.execute(
            "INSERT INTO close.rejected_records SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS ("
            " SELECT 1 FROM close.rejected_records"
            " WHERE object_type = ? AND object_id IS NOT DISTINCT FROM ? AND payload = ?)",
            [run_id, object_type, r.object_id, r.reason, r.payload, rejected_at,
             object_type, r.object_id, r.payload],
        )


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


def append_sync_state(con: duckdb.DuckDBPyConnection, summary: dict) -> None:
    columns = [
        "run_id", "mode", "started_at", "finished_at", "high_water_mark_before",
        "high_water_mark_after", "calls_inserted", "calls_updated", "calls_deleted",
        "utterances_written", "records_rejected", "requests", "rate_limited", "retries",
        "seconds_waited",
    ]
    con.execute(
        f"INSERT INTO close.sync_state ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [summary[c] for c in columns],
    )


@dataclass
class WalkPlan:
    run_id: str
    mode: str
    started_at: datetime
    high_water_mark: datetime
    windows: list[tuple[datetime, datetime]]  # every window of the plan, done or not
    pending: list[tuple[datetime, datetime]]


def load_walk_plan(con: duckdb.DuckDBPyConnection) -> WalkPlan | None:
    rows = con.execute(
        "SELECT run_id, mode, started_at, high_water_mark, window_start, window_end, done "
        "FROM close.sync_windows ORDER BY window_start"
    ).fetchall()
    if not rows:
        return None
    run_id, mode, started_at, mark = rows[0][:4]
    return WalkPlan(
        run_id, mode, started_at, mark,
        windows=[(r[4], r[5]) for r in rows],
        pending=[(r[4], r[5]) for r in rows if not r[6]],
    )


def save_walk_plan(con: duckdb.DuckDBPyConnection, plan: WalkPlan) -> None:
    con.execute("DELETE FROM close.sync_windows")
    con.execute("DELETE FROM close.sync_seen_ids")
    con.executemany(
        "INSERT INTO close.sync_windows VALUES (?, ?, ?, ?, ?, ?, false)",
        [(plan.run_id, plan.mode, plan.started_at, plan.high_water_mark, start, end)
         for start, end in plan.windows],
    )


def mark_windows_done(con: duckdb.DuckDBPyConnection, windows: list[tuple[datetime, datetime]]) -> None:
    if windows:
        con.executemany(
            "UPDATE close.sync_windows SET done = true WHERE window_start = ? AND window_end = ?",
            windows,
        )


def record_seen_ids(con: duckdb.DuckDBPyConnection, run_id: str, ids: list[str]) -> None:
    if ids:
        seen = pa.table({"run_id": pa.array([run_id] * len(ids)), "id": pa.array(ids, pa.string())})
        with registered(con, seen_batch=seen):
            con.execute("INSERT INTO close.sync_seen_ids SELECT run_id, id FROM seen_batch")


def clear_walk_plan(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM close.sync_windows")
    con.execute("DELETE FROM close.sync_seen_ids")
