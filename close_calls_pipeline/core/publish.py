"""The read-only copy of the warehouse that readers open.

DuckDB lets one process write a file, and a process that has the file open, even read-only,
keeps any other process from writing it. So readers (notebooks, the DuckDB CLI, BI tools) do not
open the warehouse the runs write: they open a copy, `close_calls_readonly.duckdb` beside
`close_calls.duckdb`, that every successful run publishes when it has finished writing:

1. under the run lock, open the warehouse (waiting, bounded, for another process to let go of
   it) and `CHECKPOINT` it, so that the file alone holds every committed change (no WAL);
2. make the new copy, in one of two ways:
   - **changed rows**: the copy the last publish replaced is kept, hidden, beside the copy
     (`.close_calls_readonly.duckdb.previous`, as private as the copy). When no process has it
     open and its tables, views and personal_data policy are the warehouse's, it is brought up
     to date in one transaction: per call id, the rows whose count or hash differ are replaced
     by the warehouse's (a call's row is hashed by its bookkeeping columns: `_hashed_rows`), and
     every smaller table that differs is replaced whole. Then every table written to must have
     the warehouse's row count and hash. An hourly run writes what changed, not the whole
     history.
   - **whole file** otherwise (the first publishes, a reader still on that older copy, a
     changed schema or personal_data policy, `keep_previous=False`): the warehouse file is
     copied while this connection keeps every other writer out, and fsynced.
3. make it read-only (mode 0400, or 0440 with `file_mode: group`), check that DuckDB opens it and
   reads the sync state, hard-link the copy it replaces to the hidden name (for the next
   publish), and `os.replace` it onto the published name: atomic, so a reader opening the name
   gets either the previous copy or the new one, whole. A reader that has the previous copy
   open keeps reading it (its open file keeps the old inode) until it closes it and connects
   again; the next publish then copies the whole file.

Nothing here waits for readers, and readers never make a run wait.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from close_calls_pipeline.core import config, files, locks, sql_text, warehouse

log = logging.getLogger(__name__)

CHANGED_ROWS = "changed rows"
WHOLE_FILE = "whole file"
# The attached name of the previous copy while it is brought up to date.
_PREVIOUS = "readonly_copy_previous"


@dataclass(frozen=True)
class PublishedCopy:
    """What a publish produced, and what it cost."""

    path: str
    size_bytes: int
    seconds: float  # the whole publish, from asking for the warehouse to the rename
    checkpoint_seconds: float
    copy_seconds: float  # making the new copy: updating the previous one, or copying the file
    live_calls: int
    last_sync_finished_at: datetime | None
    high_water_mark: datetime | None
    why_whole_file: str | None = None  # None when the previous copy was brought up to date
    rows_written: int | None = None  # when it was: rows deleted and inserted

    @property
    def method(self) -> str:
        return WHOLE_FILE if self.why_whole_file else CHANGED_ROWS


class _Unusable(Exception):
    """Why the previous copy cannot be brought up to date (the whole file is copied instead)."""


def publish_readonly_copy(
    warehouse_path: str | Path,
    *,
    lock_wait_seconds: float | None = None,
    file_mode: str = files.PRIVATE,
    keep_previous: bool = True,
) -> PublishedCopy:
    """Publish `config.readonly_copy_path(warehouse_path)` from the warehouse as it is now.

    Takes the warehouse's run lock (a run that holds it in this process may call this; another
    process's run makes it fail at once), and waits up to `lock_wait_seconds` (default
    `config.DEFAULT_LOCK_WAIT_SECONDS`) for another process to let go of the warehouse file.
    `keep_previous=False` (after an erasure) deletes the previous copy and keeps none: no file
    but the published copy holds what the warehouse no longer has."""
    source = Path(warehouse_path).resolve()
    target = config.readonly_copy_path(source)
    previous = config.readonly_previous_path(source)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    with locks.acquire_run_lock(source, owner="publish of the read-only copy"):
        _remove_stale_temp_files(target)
        if not keep_previous:
            _discard(previous)
        con = warehouse.connect(
            str(source), lock_wait_seconds=lock_wait_seconds, file_mode=file_mode
        )
        try:
            checkpoint_started = time.monotonic()
            con.execute("CHECKPOINT")
            checkpoint_seconds = time.monotonic() - checkpoint_started
            wal = Path(f"{source}.wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise RuntimeError(
                    f"{wal} is not empty after CHECKPOINT: not publishing a copy "
                    "that would miss its changes"
                )
            policy = _policy(con)  # the new copy's: it is the warehouse as it is now
            copy_started = time.monotonic()
            rows_written, why_whole_file, check_seconds = None, None, 0.0
            try:
                rows_written, check_seconds = _bring_up_to_date(
                    con, source.stem, policy, previous, target, file_mode
                )
                os.replace(previous, temp)
                os.utime(temp)  # its time is when it was published, as a copied file's
                files.restrict(temp, file_mode, read_only=True)
            except (_Unusable, duckdb.Error) as unusable:
                why_whole_file = " ".join(str(unusable).split())
                if isinstance(unusable, duckdb.Error):
                    why_whole_file = f"updating the previous copy failed: {why_whole_file}"
                    log.warning("the read-only copy: %s", why_whole_file)
                _discard(previous)  # never two copies in the making on the disk
                _copy_and_sync(source, temp, file_mode)
            copy_seconds = time.monotonic() - copy_started
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            con.close()
        try:
            live_calls, finished_at, mark = _verify(temp)
            # A WAL beside the published name would belong to a copy someone opened read-write
            # (against docs/notebooks.md); DuckDB would replay it into the new copy.
            Path(f"{target}.wal").unlink(missing_ok=True)
            # The copy replaced is kept only when it holds no personal data the policy now drops.
            keep = keep_previous and policy is not None and _copy_policy(target) == policy
            _replace_keeping_previous(temp, target, previous if keep else None)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _sync_directory(target.parent)
    published = PublishedCopy(
        path=str(target),
        size_bytes=target.stat().st_size,
        seconds=time.monotonic() - started,
        checkpoint_seconds=checkpoint_seconds,
        copy_seconds=copy_seconds,
        live_calls=live_calls,
        last_sync_finished_at=finished_at,
        high_water_mark=mark,
        why_whole_file=why_whole_file,
        rows_written=rows_written,
    )
    if why_whole_file:
        how = f"copied the whole file ({why_whole_file})"
    else:
        how = (
            f"updated the previous copy: {rows_written} rows written, checked in "
            f"{check_seconds:.2f} s"
        )
    log.info(
        "published the read-only copy %s: %.1f MB in %.2f s, %s (checkpoint %.2f s, copy %.2f s)",
        target,
        published.size_bytes / 1e6,
        published.seconds,
        how,
        checkpoint_seconds,
        copy_seconds,
    )
    return published


def discard_previous_copy(warehouse_path: str | Path) -> None:
    """Delete the previous copy kept for the next publish (callers hold the run lock)."""
    _discard(config.readonly_previous_path(Path(warehouse_path).resolve()))


def _discard(previous: Path) -> None:
    previous.unlink(missing_ok=True)
    Path(f"{previous}.wal").unlink(missing_ok=True)


# --- the previous copy, brought up to date ---------------------------------------------------------


def _bring_up_to_date(
    con: duckdb.DuckDBPyConnection,
    warehouse_name: str,
    policy: list[tuple] | None,
    previous: Path,
    target: Path,
    file_mode: str,
) -> tuple[int, float]:
    """Make the previous copy equal to the warehouse (attached to `con` as `warehouse_name`,
    its personal_data `policy` already read), writing only the rows that differ; returns how
    many rows were deleted and inserted, and the seconds the check after took. Raises
    `_Unusable` (the previous copy unchanged) when it cannot be used."""
    if not previous.exists():
        raise _Unusable("no previous copy to update")
    held = previous.stat()
    if held.st_nlink != 1 or (target.exists() and os.path.samestat(held, target.stat())):
        raise _Unusable("the previous copy has another name")
    if _open_in_this_process(previous):
        raise _Unusable("the previous copy is open in this process")
    files.restrict(previous, file_mode)  # writable by its owner while it is updated
    try:
        con.execute(f"ATTACH {sql_text.literal(str(previous))} AS {_PREVIOUS}")
    except duckdb.Error as error:
        holder = locks.duckdb_lock_holder(error)
        if holder is None:
            raise
        raise _Unusable(f"a reader still has it open: {holder.describe()}") from error
    try:
        if _catalog(con, warehouse_name) != _catalog(con, _PREVIOUS):
            raise _Unusable("the warehouse's tables or views changed")
        if _policy(con, _PREVIOUS) != policy:
            # a stricter policy's police may rewrite typed columns of calls whose `_raw` it
            # leaves as it was, which comparing the calls by `_hashed_rows` would not see
            raise _Unusable("the personal_data policy changed")
        with warehouse.transaction(con):
            written, changed_tables = 0, []
            for schema, table, columns in _tables(con, warehouse_name):
                table_started = time.monotonic()
                rows = _bring_table_up_to_date(con, warehouse_name, schema, table, columns)
                log.debug("the previous copy's %s.%s: %d rows written in %.2f s", schema, table,
                          rows, time.monotonic() - table_started)  # fmt: skip
                if rows:
                    written += rows
                    changed_tables.append((schema, table, columns))
            check_started = time.monotonic()
            # The tables nothing was written to were just found equal: the others are checked.
            differing = _differing_tables(con, warehouse_name, changed_tables)
            check_seconds = time.monotonic() - check_started
            if differing:  # a safety net: the steps above make them equal
                log.warning("the previous read-only copy differs from the warehouse in %s after "
                            "its update: copying the whole file", ", ".join(differing))  # fmt: skip
                raise _Unusable(f"{', '.join(differing)} differed after the update")
        checkpoint_started = time.monotonic()
        con.execute(f"CHECKPOINT {_PREVIOUS}")
        log.debug("the previous copy's checkpoint: %.2f s", time.monotonic() - checkpoint_started)
    finally:
        con.execute(f"DETACH {_PREVIOUS}")
    if Path(f"{previous}.wal").exists():
        raise _Unusable("the previous copy kept a WAL after its checkpoint")
    return written, check_seconds


def _tables(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str, list[str]]]:
    """(schema, table, column names) of every table."""
    return con.execute(
        "SELECT schema_name, table_name, list(column_name ORDER BY column_index) "
        "FROM duckdb_tables() JOIN duckdb_columns() USING (database_name, schema_name, table_name) "
        "WHERE database_name = $database GROUP BY ALL ORDER BY ALL",
        {"database": database},
    ).fetchall()


def _key(columns: list[str]) -> str | None:
    """The column that holds a call's id (`call_id`, or `id` in `close.calls`), if any."""
    return next((key for key in ("call_id", "id") if key in columns), None)


def _hashed_rows(table: str, columns: list[str]) -> str:
    """The table's rows as they are hashed. A table with `_raw` (the payload as received) and
    `_raw_hash` (`hash(_raw)`) is `close.calls`, whose typed columns are read from `_raw`: its
    row is hashed as its key and its columns named `_...` but `_raw` (`_raw_hash`,
    `_change_seq`, `_deleted_at`, `_loaded_at`, ...). That holds because every writer of
    `close.calls` that changes a typed column also changes `_raw` and `_raw_hash` (the
    personal-data police, an erasure) or numbers the change (`_change_seq`: the sync), and a
    changed personal-data policy makes the whole file be copied (`_bring_up_to_date`). The
    typed columns were most of what hashing the calls cost: 0.12-0.15 s a side at 100,000
    calls, against 0.03 s for these (docs/benchmarks.md)."""
    if "_raw" in columns and "_raw_hash" in columns:
        key = _key(columns)
        kept = [c for c in columns if c == key or (c.startswith("_") and c != "_raw")]
        return f"(SELECT {', '.join(sql_text.identifier(c) for c in kept)} FROM {table})"
    return table


def _bring_table_up_to_date(
    con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str, columns: list[str]
) -> int:
    """Replace the previous copy's rows of one table that differ; returns rows written."""
    source, copy = _qualified(database, schema, table), _qualified(_PREVIOUS, schema, table)
    key = _key(columns)
    if key is not None:
        names = {
            "source": source,
            "copy": copy,
            "key": sql_text.identifier(key),
            "source_rows": _hashed_rows(source, columns),
            "copy_rows": _hashed_rows(copy, columns),
        }
        ((changed,),) = warehouse.run_script(con, "readonly_copy_changed_keys.sql", names=names)[-1]
        if not changed:
            return 0
        (((deleted,),), ((inserted,),)) = warehouse.run_script(
            con, "readonly_copy_replace_keys.sql", names=names
        )
        return deleted + inserted
    if _summary(con, source, columns) == _summary(con, copy, columns):
        return 0
    ((deleted,),) = con.execute(f"DELETE FROM {copy}").fetchall()
    ((inserted,),) = con.execute(f"INSERT INTO {copy} SELECT * FROM {source}").fetchall()
    return deleted + inserted


def _differing_tables(
    con: duckdb.DuckDBPyConnection, database: str, tables: list[tuple[str, str, list[str]]]
) -> list[str]:
    return [
        f"{schema}.{table}"
        for schema, table, columns in tables
        if _summary(con, _qualified(database, schema, table), columns)
        != _summary(con, _qualified(_PREVIOUS, schema, table), columns)
    ]


def _summary(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> tuple:
    """A table's row count and the sum of its rows' hashes."""
    rows = _hashed_rows(table, columns)
    return con.execute(f"SELECT count(*), sum(hash(t)) FROM {rows} AS t").fetchone()


def _catalog(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple]:
    return con.execute(
        warehouse.read_sql("readonly_copy_catalog.sql"), {"database": database}
    ).fetchall()


def _qualified(*parts: str) -> str:
    return ".".join(sql_text.identifier(part) for part in parts)


def _open_in_this_process(path: Path) -> bool:
    """Whether this process has `path`'s file open (a DuckDB connection of the caller's on an
    old copy: its lock would not keep this process out). False where /proc is not there."""
    wanted = path.stat()
    descriptors = Path("/proc/self/fd")
    if not descriptors.is_dir():
        return False
    for fd in descriptors.iterdir():
        try:
            if os.path.samestat(os.stat(fd), wanted):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _replace_keeping_previous(temp: Path, target: Path, previous: Path | None) -> None:
    """Publish `temp` as `target`; the copy it replaces becomes `previous` (when given)."""
    if previous is None:
        os.replace(temp, target)
        return
    linked = target.with_name(f".{target.name}.{os.getpid()}.previous.tmp")
    linked.unlink(missing_ok=True)
    try:
        os.link(target, linked)
    except OSError as error:  # a filesystem without hard links: the next publish copies the file
        log.info("the read-only copy replaced is not kept (%s)", error.strerror)
        os.replace(temp, target)
        return
    os.replace(temp, target)
    os.replace(linked, previous)


def _remove_stale_temp_files(target: Path) -> None:
    """Copies left by a publish that was killed (callers hold the run lock: none is running)."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _copy_and_sync(source: Path, destination: Path, file_mode: str) -> None:
    """Copy `source` to a new `destination` (in the kernel where it can), fsync it, make it
    read-only."""
    with open(source, "rb") as src, open(destination, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        try:
            copied = 0
            while copied < size:
                # Kernel-side copy (a reflink on filesystems that have them); no user-space buffer.
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:  # e.g. an old kernel or a filesystem without it: a plain copy
            src.seek(0)
            dst.seek(0)
            dst.truncate()
            shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
            copied = dst.tell()
        if copied != size:
            raise OSError(f"copied {copied} of {size} bytes of {source}")
        dst.flush()
        os.fsync(dst.fileno())
    files.restrict(destination, file_mode, read_only=True)  # 0400, or 0440 shared with the group


def _verify(copy: Path) -> tuple[int, datetime | None, datetime | None]:
    """Open the copy as a reader would and read what it holds: live calls, the newest sync."""
    con = duckdb.connect(str(copy), read_only=True)
    try:
        (live_calls,) = con.execute(
            "SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL"
        ).fetchone()
        finished_at, mark = con.execute(
            "SELECT max(finished_at), arg_max(high_water_mark_after, finished_at) "
            "FROM close.sync_state"
        ).fetchone()
    finally:
        con.close()
    return live_calls, finished_at, mark


def _policy(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[tuple] | None:
    """The personal_data policy the rows of `database` (the connection's own by default) were
    written under; None where none is recorded (a warehouse from before policies)."""
    table = _qualified(*([database] if database else []), "close", "personal_data_policy")
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    except duckdb.Error:
        return None


def _copy_policy(copy: Path) -> list[tuple] | None:
    """The policy of the published copy (None when there is none, or it cannot be read)."""
    if not copy.exists():
        return None
    try:
        con = duckdb.connect(str(copy), read_only=True)
    except duckdb.Error:
        return None
    try:
        return _policy(con)
    finally:
        con.close()


def _sync_directory(directory: Path) -> None:
    """Make the rename durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
