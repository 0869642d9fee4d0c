"""The team's set-up end to end (docs/lake.md, "PostgreSQL and S3"): `close-calls run` (sync, dbt,
report) into a lake whose catalog is a PostgreSQL server and whose data path is an S3 server,
both reached over their network protocols (throwaway servers on loopback:
tests/helpers/lake_servers.py), while a second process reads it.

The run's only credentials are in its environment (PGPASSWORD, AWS_*); they appear in none of
what it leaves behind: its output, the Dagster instance, dbt's target folder, the report, the
lake's catalog. Nothing is written on local disk but those: no DuckDB file, no Parquet file.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers.lake_files import data_files
from helpers.lake_servers import postgres_server, s3_server  # noqa: F401
from helpers.truth import assert_warehouse_matches_truth, mart_counts, truth_counts
from test_lake import (
    VENV_BIN,
    Reader,
    a_project,
    assert_reads_were_whole,
    close_calls_run,
    shell,
)

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.lake import Lake, connect_lake
from close_calls_pipeline.core.lake_maintenance import lake_files

API_KEY = "sandbox-key-team-0451"


def _run(project: Path, env: dict[str, str], *args: str) -> str:
    run = close_calls_run(project, env, *args)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    return output


def _files_text(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(900)  # two whole runs with dbt, and maintenance, over the network
def test_close_calls_run_into_postgres_and_s3_equals_the_truth_while_a_reader_reads(
    make_sandbox,
    postgres_server,  # noqa: F811
    s3_server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    server = make_sandbox(calls=12_000, seed=73, latency_ms=50, api_key=API_KEY)
    store = server.store
    database = postgres_server.create_database(f"team_{uuid.uuid4().hex[:8]}")
    prefix = f"{database}/data"
    lake = Lake(postgres_server.catalog(database), f"s3://{s3_server.bucket}/{prefix}/")
    credentials = {**postgres_server.environ(), **s3_server.environ()}
    for name, value in credentials.items():  # this process's readers, and the reader process
        monkeypatch.setenv(name, value)
    project = a_project(tmp_path / "project", dbt_marts=True)
    env = shell(
        project, server,
        CLOSE_API_KEY=API_KEY,
        CLOSE_CALLS_LAKE_CATALOG=lake.catalog, CLOSE_CALLS_LAKE_DATA_PATH=lake.data_path,
        **credentials,
    )  # fmt: skip
    warehouse.connect(lake).close()  # an empty lake, as a team would make it first
    reader = Reader(lake)
    outputs = []
    try:
        # 1. the backfill, dbt and the report
        outputs.append(_run(project, env))
        assert "DuckLake ducklake:postgres:" in outputs[-1]
        assert mart_counts(lake) == truth_counts(store)
        con = connect_lake(lake, read_only=True)
        try:
            assert_warehouse_matches_truth(con, store)
        finally:
            con.close()

        # 2. an hour of activity in Close, then the incremental run
        store.mutate_random(random.Random(9), new=20, updated=30, deleted=5)
        store.advance(3600)
        outputs.append(_run(project, env))
        assert "mode=incremental" in outputs[-1], outputs[-1][-3000:]
    finally:
        seen = reader.stop()

    counts = assert_reads_were_whole(seen)
    assert len(counts) >= 3 and counts[0] == 0, counts  # read throughout the backfill

    # 3. maintenance over the same protocols: everything stays; the objects left are the
    # files the lake's one remaining snapshot needs
    maintained = subprocess.run(
        [str(VENV_BIN / "close-calls"), "maintain", "--retention-days", "0",
         "--file-grace-hours", "0"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert maintained.returncode == 0, maintained.stdout + maintained.stderr
    outputs.append(maintained.stdout + maintained.stderr)
    con = connect_lake(lake, read_only=True)
    try:
        assert_warehouse_matches_truth(con, store)
        modes = [
            m
            for (m,) in con.execute(
                "SELECT mode FROM close.sync_state ORDER BY finished_at"
            ).fetchall()
        ]
        files_needed = lake_files(con).files
        tracked = set(data_files(con, "fct_calls", schema="analytics"))
    finally:
        con.close()
    assert modes == ["backfill", "incremental"]
    assert mart_counts(lake) == truth_counts(store)

    # The data files are objects in the S3 server (the sync's and dbt's), nothing on local disk.
    keys = set(s3_server.keys(prefix))
    assert len(keys) == files_needed > 0
    assert tracked and {p.removeprefix(f"s3://{s3_server.bucket}/") for p in tracked} <= keys
    assert any(key.startswith(f"{prefix}/close/") for key in keys), sorted(keys)[:10]
    local = [p for p in project.rglob("*") if p.suffix in (".duckdb", ".parquet", ".ducklake")]
    assert not local, local

    # No credential anywhere: output, Dagster's instance, dbt's target, the report, the catalog.
    secrets = [postgres_server.password, s3_server.secret_access_key, API_KEY]
    written = {"output": "\n".join(outputs).encode()} | _files_text(project)
    written["catalog"] = postgres_server.dump(database).encode()
    report = Path(outputs[1].split("Call report: ", 1)[1].split()[0])
    looked_in = {"dagster_home", ".close_calls/dbt/dagster"}  # Dagster's instance, dbt's target
    assert report in written and all(
        any(part in str(path) for path in written) for part in looked_in
    ), sorted(map(str, written))[:20]
    leaks = [(where, secret) for where, text in written.items() for secret in secrets
             if secret.encode() in text]  # fmt: skip
    assert not leaks, leaks
