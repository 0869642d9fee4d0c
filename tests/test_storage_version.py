"""A warehouse file written by DuckDB 2.0 (which our DuckDB, on the 1.5 line, cannot open): every
open says so in one line, with what to do; `close-calls start-over` then lets the next run
backfill a new file."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.duck import query

from close_calls_pipeline.core import storage_version, warehouse
from close_calls_pipeline.core.storage_version import WarehouseFromNewerDuckDBError, read_header
from close_calls_pipeline.dagster_component.component import CloseCallsComponent, build_definitions
from close_calls_pipeline.dagster_component.keys import INGESTION_KEYS

# What a file written by DuckDB 2.0.1 has in its main header (read from one made with
# `pip install duckdb==2.0.1`): storage version 999 and its writer's version. The first 8 bytes
# are a checksum of the rest of the 4096-byte header: XOR of each little-endian uint64 times
# 0xbf58476d1ce4e5b9, starting from 5381 (DuckDB's block checksum).
DUCKDB_2_STORAGE_VERSION = 999
DUCKDB_2_WRITER = b"v2.0.1"
_HEADER_BLOCK = 4096


def _checksum(block: bytes) -> int:
    result = 5381
    for (word,) in struct.iter_unpack("<Q", block):
        result ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return result


def make_duckdb_2_file(path: Path) -> None:
    """A warehouse file (real schema) whose header is a DuckDB 2.0.1 file's."""
    warehouse.connect(str(path)).close()
    with open(path, "r+b") as file:
        header = bytearray(file.read(_HEADER_BLOCK))
        struct.pack_into("<Q", header, 12, DUCKDB_2_STORAGE_VERSION)
        header[52:84] = DUCKDB_2_WRITER.ljust(32, b"\0")
        struct.pack_into("<Q", header, 0, _checksum(bytes(header[8:])))
        file.seek(0)
        file.write(header)


@pytest.fixture
def duckdb_2_file(tmp_path) -> Path:
    path = tmp_path / "data" / "close_calls.duckdb"
    path.parent.mkdir()
    make_duckdb_2_file(path)
    return path


def test_the_made_file_is_refused_as_a_duckdb_2_file_is(duckdb_2_file):
    # The same refusal DuckDB 1.5 gives a file DuckDB 2.0.1 wrote (not a checksum error).
    with pytest.raises(duckdb.IOException, match="version number 999, but we can only read"):
        duckdb.connect(str(duckdb_2_file), read_only=True)
    assert read_header(duckdb_2_file) == storage_version.FileHeader(999, "v2.0.1")
    assert read_header(duckdb_2_file.with_name("missing.duckdb")) is None


def test_opening_it_says_what_it_is_and_what_to_do_in_one_line(duckdb_2_file):
    with pytest.raises(WarehouseFromNewerDuckDBError) as refused:
        warehouse.connect(str(duckdb_2_file))
    message = str(refused.value)
    assert "\n" not in message
    assert "DuckDB v2.0.1" in message and duckdb.__version__ in message
    assert "close-calls start-over" in message and "lake_catalog" in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_healthy_file_or_another_error_is_left_alone(tmp_path):
    not_a_refusal = duckdb.IOException("IO Error: Could not set lock on file")
    storage_version.raise_if_written_by_newer_duckdb(tmp_path / "x.duckdb", not_a_refusal)
    healthy = tmp_path / "healthy.duckdb"
    warehouse.connect(str(healthy)).close()
    assert read_header(healthy).storage_version < DUCKDB_2_STORAGE_VERSION


@pytest.mark.slow
def test_a_run_fails_in_one_line_then_start_over_lets_the_next_run_backfill(duckdb_2_file):
    settings = CloseCallsComponent(duckdb_path=str(duckdb_2_file), sandbox_calls=40).settings(
        duckdb_2_file.parent
    )

    def ingest():
        return (
            build_definitions(settings)
            .resolve_job_def("close_calls_pipeline")
            .execute_in_process(
                instance=dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
                asset_selection=list(INGESTION_KEYS),
            )
        )

    failed = ingest()
    assert not failed.success
    errors = [
        event.event_specific_data.error.message
        for event in failed.all_events
        if getattr(event.event_specific_data, "error", None)
    ]
    # the warehouse resource's setup (the organization check's read) is the first to open it
    assert any(
        "WarehouseFromNewerDuckDBError" in text and "close-calls start-over" in text
        for text in errors
    ), errors

    moved = subprocess.run(
        [str(Path(sys.executable).parent / "close-calls"), "start-over"],
        cwd=duckdb_2_file.parent,
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "DAGSTER_HOME": str(duckdb_2_file.parent / "dagster_home"),
            "CLOSE_CALLS_DUCKDB": str(duckdb_2_file),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    (backup,) = duckdb_2_file.parent.glob("close_calls.*.bak.duckdb")
    assert read_header(backup).written_by == "v2.0.1"  # kept as it was

    assert ingest().success
    assert query(duckdb_2_file, "SELECT count(*) FROM close.calls")[0][0] > 0
