"""The read-only copy written from the rows that changed (core/publish.py), on a warehouse synced
from the sandbox over loopback HTTP, with real DuckDB files and real reader processes:

* after rounds of changes in Close (new, updated and deleted calls) and in tables of every
  shape (rows without a call id, repeated rows, a table without one), each publish updates the
  previous copy, writes a small share of the rows, and publishes a copy equal to the warehouse,
  table by table, row for row;
* a call's row is compared by its bookkeeping columns (`_raw_hash`, `_change_seq`, ...): calls
  erased in place (their `_raw` rewritten) are written to the copy like those the sync changed;
* the whole file is copied when the previous copy cannot be updated: a reader still has it
  open (in another process, or in this one), the warehouse's tables or its personal_data
  policy changed (which keeps no previous copy); the next publish updates again;
* `close-calls start-over` deletes the previous copy.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import duckdb
import pytest
from helpers.processes import release, start_holder, stop
from helpers.sandbox_warehouse import sync

from close_calls_pipeline.core import config, personal_data, warehouse
from close_calls_pipeline.core.publish import CHANGED_ROWS, WHOLE_FILE, publish_readonly_copy
from close_calls_pipeline.core.start_over import move_warehouse_aside


def differences(warehouse_path: Path, copy_path: Path) -> dict[str, tuple[int, int]]:
    """Per table of either file: (rows only the warehouse has, rows only the copy has), counted
    as multisets; and the tables or views one has and the other not. Empty when equal."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{warehouse_path}' AS w (READ_ONLY)")
        con.execute(f"ATTACH '{copy_path}' AS c (READ_ONLY)")

        def objects(database: str) -> set[tuple]:
            tables = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?",
                [database],
            ).fetchall()
            views = con.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() "
                "WHERE database_name = ? AND NOT internal",
                [database],
            ).fetchall()
            return set(tables) | set(views)

        found = {}
        w_objects, c_objects = objects("w"), objects("c")
        if w_objects != c_objects:
            found["catalog"] = (len(w_objects - c_objects), len(c_objects - w_objects))
        for schema, table in sorted(o for o in w_objects & c_objects if len(o) == 2):
            name = f'"{schema}"."{table}"'
            only = [
                con.execute(
                    f"SELECT count(*) FROM (SELECT * FROM {a}.{name} EXCEPT ALL "
                    f"SELECT * FROM {b}.{name})"
                ).fetchone()[0]
                for a, b in (("w", "c"), ("c", "w"))
            ]
            if any(only):
                found[f"{schema}.{table}"] = tuple(only)
        return found
    finally:
        con.close()


def row_count(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        return sum(
            con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tables
        )
    finally:
        con.close()


def change_tables_of_every_shape(db_path: Path, round_: int) -> None:
    """Rows without a call id, a repeated row, a deleted one, and a table without a call id."""
    con = warehouse.connect(str(db_path))
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS close.test_shapes (call_id VARCHAR, note_count INTEGER)"
        )
        con.execute("CREATE TABLE IF NOT EXISTS close.test_keyless (name VARCHAR, n INTEGER)")
        con.execute(
            "INSERT INTO close.test_shapes VALUES (NULL, ?), (NULL, ?), ('acti_x', 1), "
            "('acti_x', 1)",
            [round_, round_],
        )
        con.execute("DELETE FROM close.test_shapes WHERE note_count = ?", [round_ - 2])
        con.execute("INSERT INTO close.test_keyless VALUES ('round', ?)", [round_])
        con.execute("UPDATE close.test_keyless SET n = n + 1 WHERE n < ?", [round_])
    finally:
        con.close()


@pytest.fixture
def synced(make_sandbox, tmp_path):
    """A sandbox and a warehouse synced from it, published twice: the second publish kept the
    first copy as the previous one."""
    sandbox = make_sandbox(calls=1500, seed=11)
    db_path = tmp_path / "data" / "close_calls.duckdb"
    sync(sandbox, db_path)
    change_tables_of_every_shape(db_path, 1)
    first = publish_readonly_copy(db_path)
    assert first.method == WHOLE_FILE and first.why_whole_file == "no previous copy to update"
    previous = config.readonly_previous_path(db_path)
    assert not previous.exists()  # nothing was replaced: nothing kept
    published_inode = Path(first.path).stat().st_ino
    second = publish_readonly_copy(db_path)
    assert second.method == WHOLE_FILE
    assert previous.stat().st_ino == published_inode  # the copy replaced, kept
    assert stat.S_IMODE(previous.stat().st_mode) == 0o400
    return sandbox, db_path


def change_and_sync(sandbox, db_path: Path, round_: int) -> None:
    sandbox.store.mutate_random(random.Random(round_), new=8, updated=12, deleted=3)
    sandbox.store.advance(60)
    sync(sandbox, db_path)
    change_tables_of_every_shape(db_path, round_)


def test_each_publish_writes_the_changed_rows_and_equals_the_warehouse(synced):
    sandbox, db_path = synced
    copy = config.readonly_copy_path(db_path)
    for round_ in range(2, 6):
        change_and_sync(sandbox, db_path, round_)
        published = publish_readonly_copy(db_path)
        assert published.method == CHANGED_ROWS, published.why_whole_file
        assert differences(db_path, copy) == {}, f"round {round_}"
        # two rounds of changes (the previous copy is the one before the last), not the history
        assert 0 < published.rows_written < row_count(db_path) / 5, published.rows_written
        assert stat.S_IMODE(copy.stat().st_mode) == 0o400
        assert published.live_calls == len(sandbox.store.truth())
    # with nothing changed since, only the two publishes' difference is written
    published = publish_readonly_copy(db_path)
    assert published.method == CHANGED_ROWS and differences(db_path, copy) == {}


def test_calls_rewritten_in_place_are_written_to_the_copy(synced):
    """A writer that changes a call's columns without numbering the change rewrites its `_raw`
    and `_raw_hash` (here an erasure, as the sync erases a deleted call): the copy gets it."""
    _, db_path = synced
    copy = config.readonly_copy_path(db_path)
    con = warehouse.connect(str(db_path))
    try:
        erased = [row[0] for row in con.execute(
            "SELECT id FROM close.calls WHERE note IS NOT NULL OR phone IS NOT NULL "
            "ORDER BY id LIMIT 5"
        ).fetchall()]  # fmt: skip
        assert len(erased) == 5
        con.execute("CREATE OR REPLACE TEMP TABLE erased_calls AS SELECT unnest(?) AS id", [erased])
        with warehouse.transaction(con):
            assert warehouse.erase_listed_calls(con)[0] == 5
    finally:
        con.close()
    for _ in range(2):  # the previous copy is one publish behind: both rewrite the erased calls
        published = publish_readonly_copy(db_path)
        assert published.method == CHANGED_ROWS, published.why_whole_file
        assert differences(db_path, copy) == {}
    reader = duckdb.connect(str(copy), read_only=True)
    try:
        assert reader.execute(
            "SELECT count(*) FROM close.calls WHERE id IN (SELECT unnest(?)) "
            "AND note IS NULL AND phone IS NULL",
            [erased],
        ).fetchone() == (5,)
    finally:
        reader.close()


def test_a_reader_on_the_previous_copy_makes_the_publish_copy_the_whole_file(synced):
    sandbox, db_path = synced
    copy = config.readonly_copy_path(db_path)
    reader = start_holder(copy, "ro")  # a notebook that does not reconnect
    try:
        change_and_sync(sandbox, db_path, 2)
        assert publish_readonly_copy(db_path).method == CHANGED_ROWS  # its copy is kept...
        change_and_sync(sandbox, db_path, 3)
        published = publish_readonly_copy(db_path)  # ...and cannot be written while it reads
        assert published.method == WHOLE_FILE
        assert f"a reader still has it open: PID {reader.pid}" in published.why_whole_file
        assert differences(db_path, copy) == {}
        release(reader)
    finally:
        stop(reader)
    change_and_sync(sandbox, db_path, 4)
    assert publish_readonly_copy(db_path).method == CHANGED_ROWS
    assert differences(db_path, copy) == {}

    # a connection of this process on it: DuckDB's lock does not keep this process out
    mine = duckdb.connect(str(config.readonly_previous_path(db_path)), read_only=True)
    try:
        published = publish_readonly_copy(db_path)
        assert published.why_whole_file == "the previous copy is open in this process"
        assert mine.execute("SELECT count(*) FROM close.test_keyless").fetchone()[0] > 0
    finally:
        mine.close()


def test_changed_tables_copy_the_whole_file_and_a_changed_policy_keeps_no_previous(synced):
    sandbox, db_path = synced
    copy, previous = config.readonly_copy_path(db_path), config.readonly_previous_path(db_path)
    con = warehouse.connect(str(db_path))
    con.execute("ALTER TABLE close.test_keyless ADD COLUMN added INTEGER DEFAULT 7")
    con.close()
    for _ in range(2):  # the previous copy is one publish behind: it had the old tables twice
        published = publish_readonly_copy(db_path)
        assert published.why_whole_file == "the warehouse's tables or views changed"
        assert differences(db_path, copy) == {}
    assert publish_readonly_copy(db_path).method == CHANGED_ROWS

    con = warehouse.connect(str(db_path))
    strict = personal_data.PersonalDataPolicy(notes=personal_data.DROP)
    assert personal_data.apply_to_stored(con, personal_data.CallPolice(strict))  # rewrote rows
    con.close()
    published = publish_readonly_copy(db_path)
    # the police rewrote calls in place: the previous copy, under the old policy, is not updated
    assert published.why_whole_file == "the personal_data policy changed"
    assert differences(db_path, copy) == {}
    # the copy it replaced holds the notes the policy now drops: not kept
    assert not previous.exists()
    published = publish_readonly_copy(db_path)
    assert published.why_whole_file == "no previous copy to update"
    assert previous.exists() and differences(db_path, previous) == {}
    assert os.stat(previous).st_nlink == 1


def test_start_over_deletes_the_previous_copy_with_the_warehouse_moved_aside(synced):
    _, db_path = synced
    previous = config.readonly_previous_path(db_path)
    assert previous.exists()
    moved = dict(move_warehouse_aside(db_path))
    assert config.readonly_copy_path(db_path) in moved and db_path in moved
    assert not previous.exists()  # an older state of the copy moved aside: not kept
