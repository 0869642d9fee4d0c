"""dbt builds the marts in a DuckLake exactly as in the warehouse file.

A warehouse file is synced from the sandbox over loopback; its `close` tables are copied into a
fresh lake (a SQLite catalog and a local data folder). The real dbt builds both, planned as the
pipeline plans (core/build_plan.py): a full build with every unit and data test, then, after
a round of changes synced into the file and copied into the lake (new `_change_seq` numbers),
an incremental build (the build_state hooks and their changed calls, the delete+insert marts).
Every analytics table of the lake equals the file's, row for row, after each.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from helpers.dbt_fixture import DBT_PROJECT_DIR, build_as_planned, run_dbt
from helpers.sandbox_warehouse import sync
from test_incremental_marts import mart_differences, move_some_calls

from close_calls_pipeline.cli.docs import dbt_docs, docs_target_path
from close_calls_pipeline.cli.main import main as cli_main
from close_calls_pipeline.core import build_plan, config, dbt_launcher, warehouse
from close_calls_pipeline.core.lake import ATTACH_NAME, Lake, connect_lake
from close_calls_pipeline.report import write_report

TIMEZONE = "America/Los_Angeles"


def new_lake(folder: Path) -> Lake:
    folder.mkdir()
    return Lake(f"sqlite:{folder / 'catalog.sqlite'}", str(folder / "data"))


def copy_close_schema(source: Path, lake: Lake) -> None:
    """The lake's `close` tables become the file's, in one snapshot (created the first time)."""
    con = connect_lake(lake)
    try:
        con.execute(f"ATTACH '{source}' AS source (READ_ONLY)")
        tables = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = 'source' AND schema_name = 'close'"
            ).fetchall()
        ]
        con.execute("BEGIN")
        con.execute("CREATE SCHEMA IF NOT EXISTS close")
        for table in tables:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS close.{table} AS FROM source.close.{table} LIMIT 0"
            )
            con.execute(f"DELETE FROM close.{table}")
            con.execute(f"INSERT INTO close.{table} FROM source.close.{table}")
        con.execute("COMMIT")
    finally:
        con.close()


def plan_and_request(con: duckdb.DuckDBPyConnection, dbt_vars: str) -> build_plan.BuildPlan:
    fingerprint = build_plan.fingerprint(con, DBT_PROJECT_DIR, json.loads(dbt_vars))
    plan = build_plan.plan(con, fingerprint)
    build_plan.request(con, plan)
    return plan


def build_file(db: Path, work_dir: Path) -> str:
    dbt_vars = dbt_launcher.dbt_vars(str(db), config.DEFAULT_DBT_MEMORY_LIMIT, TIMEZONE)
    con = warehouse.connect(str(db))
    try:
        plan = plan_and_request(con, dbt_vars)
    finally:
        con.close()
    build_as_planned(plan, dbt_vars, db, work_dir, lambda: warehouse.connect(str(db)))
    return plan.mode


def build_lake(lake: Lake, work_dir: Path) -> str:
    # the file path is not read in lake mode: a missing file shows that nothing opens it
    missing = str(work_dir / "not-a-warehouse.duckdb")
    dbt_vars = dbt_launcher.dbt_vars(missing, config.DEFAULT_DBT_MEMORY_LIMIT, TIMEZONE, lake=lake)
    con = connect_lake(lake)
    try:
        plan = plan_and_request(con, dbt_vars)
    finally:
        con.close()
    build_as_planned(plan, dbt_vars, Path(missing), work_dir, lambda: connect_lake(lake))
    assert not Path(missing).exists()
    return plan.mode


def catalog_tables(lake: Lake) -> int:
    """The tables the lake's SQLite catalog holds, those dropped in snapshots not yet expired
    included."""
    catalog = sqlite3.connect(lake.catalog.removeprefix("sqlite:"))
    try:
        (count,) = catalog.execute("SELECT count(*) FROM ducklake_table").fetchone()
    finally:
        catalog.close()
    return count


def lake_marts_as_file(lake: Lake, out: Path) -> Path:
    """The lake's analytics tables and views (their rows), read through a read-only attach,
    copied into a DuckDB file (for mart_differences)."""
    con = connect_lake(lake, read_only=True)
    try:
        con.execute(f"ATTACH '{out}' AS copy")
        con.execute("CREATE SCHEMA copy.analytics")
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = 'close_calls' AND schema_name = 'analytics' "
            "UNION ALL SELECT view_name FROM duckdb_views() "
            "WHERE database_name = 'close_calls' AND schema_name = 'analytics'"
        ).fetchall()
        for (table,) in tables:
            con.execute(f"CREATE TABLE copy.analytics.{table} AS FROM analytics.{table}")
    finally:
        con.close()
    return out


def assert_lake_marts_equal_the_file(lake: Lake, db: Path, out: Path) -> None:
    differences = mart_differences(lake_marts_as_file(lake, out), db)
    assert len(differences) >= 10, differences
    assert not any(differences.values()), differences


@contextmanager
def mart_rewritten_by_a_build_under_way(lake: Lake) -> Iterator[None]:
    """A dbt build that has committed its new call_metrics_by_user_daily (and so the view
    call_metrics_daily over it) and not yet the other marts (every row's calls changed by a
    million), undone on exit."""
    shift = "UPDATE analytics.call_metrics_by_user_daily SET calls = calls + ?"
    sum_of_calls = "SELECT sum(calls) FROM analytics.call_metrics_daily"
    con = connect_lake(lake)
    try:
        (before,) = con.execute(sum_of_calls).fetchone()
        con.execute(shift, [1_000_000])
        (during,) = con.execute(sum_of_calls).fetchone()
        assert during != before  # what a reader of the newest snapshot sees
        yield
        con.execute(shift, [-1_000_000])
    finally:
        con.close()


def assert_reports_agree(lake: Lake, db: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The report read from the lake shows the file's figures, those of the last complete dbt
    build even while another build has rewritten a mart; `close-calls report` reads the lake
    when the settings name one (the warehouse file is never opened)."""
    from_file = write_report(str(db), tmp_path / "file.html", timezone=TIMEZONE)
    missing = tmp_path / "no-file" / "warehouse.duckdb"
    with mart_rewritten_by_a_build_under_way(lake):
        from_lake = write_report(str(missing), tmp_path / "lake.html", timezone=TIMEZONE, lake=lake)
    assert from_file.figures["calls"] > 0
    assert from_lake.period == from_file.period
    assert from_lake.figures == from_file.figures
    assert from_lake.previous_figures == from_file.previous_figures
    assert lake.data_path in from_lake.path.read_text()  # the page names where it read from

    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(missing))
    monkeypatch.setenv("CLOSE_CALLS_LAKE_CATALOG", lake.catalog)
    monkeypatch.setenv("CLOSE_CALLS_LAKE_DATA_PATH", lake.data_path)
    out = tmp_path / "cli.html"
    period = ["--from", str(from_file.period.start), "--to", str(from_file.period.end)]
    assert cli_main(["report", *period, "--out", str(out)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(out)
    assert lake.data_path in out.read_text()
    assert not missing.exists()


def assert_docs_describe_the_lake(project_dir: Path) -> None:
    """`close-calls docs` (the lake's settings in the environment, as assert_reports_agree left
    them) builds the site from the lake's catalog: the marts, with their columns."""
    project_dir.mkdir()
    assert dbt_docs(project_dir, port=0, serve=False) == 0
    catalog = json.loads((docs_target_path(project_dir) / "catalog.json").read_text())
    fct_calls = catalog["nodes"]["model.close_calls.fct_calls"]
    assert fct_calls["metadata"]["database"] == ATTACH_NAME
    assert "call_id" in fct_calls["columns"]


def test_dbt_vars_name_the_lake_only_when_there_is_one(tmp_path):
    file_only = json.loads(dbt_launcher.dbt_vars("/w.duckdb", "2GB", TIMEZONE))
    assert file_only == {
        "close_calls_duckdb": "/w.duckdb",
        "duckdb_memory_limit": "2GB",
        "reporting_timezone": TIMEZONE,
    }
    lake = Lake("sqlite:/srv/catalog.sqlite", "s3://bucket/calls")
    in_lake = json.loads(dbt_launcher.dbt_vars("/w.duckdb", "2GB", TIMEZONE, lake=lake))
    assert in_lake.items() >= file_only.items()
    assert in_lake["lake_catalog"] == lake.catalog
    assert in_lake["lake_attach_options"]["data_path"] == lake.data_path
    assert in_lake["lake_attach_options"]["meta_journal_mode"] == "WAL"  # a SQLite catalog
    assert in_lake["lake_attach_name"] == ATTACH_NAME
    assert in_lake["duckdb_autoinstall_known_extensions"] == "false"  # never a download
    assert (Path(in_lake["duckdb_extension_directory"])).is_dir()

    # where dbt builds is not what it computes: the lake's vars leave the fingerprint alone
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute(warehouse.read_sql("schema.sql"))
        fingerprints = {
            build_plan.fingerprint(con, DBT_PROJECT_DIR, vars_) for vars_ in (file_only, in_lake)
        }
    finally:
        con.close()
    assert len(fingerprints) == 1


@pytest.mark.slow
def test_dbt_builds_the_marts_in_a_lake_as_in_the_file(make_sandbox, tmp_path, monkeypatch, capsys):
    server = make_sandbox(calls=300, seed=7)
    rng = random.Random(11)
    db = tmp_path / "warehouse.duckdb"
    lake = new_lake(tmp_path / "lake")
    sync(server, db)
    copy_close_schema(db, lake)

    assert build_file(db, tmp_path / "file_dbt") == build_plan.FULL
    assert build_lake(lake, tmp_path / "lake_dbt") == build_plan.FULL
    assert_lake_marts_equal_the_file(lake, db, tmp_path / "lake_full.duckdb")
    assert_reports_agree(lake, db, tmp_path, monkeypatch, capsys)
    assert_docs_describe_the_lake(tmp_path / "project")

    server.store.mutate_random(rng, new=8, updated=20, deleted=4, old_share=0.5)
    move_some_calls(server.store, rng, 10)
    server.store.advance(1200)
    sync(server, db)
    copy_close_schema(db, lake)

    assert build_file(db, tmp_path / "file_dbt") == build_plan.INCREMENTAL
    tables_before = catalog_tables(lake)
    assert build_lake(lake, tmp_path / "lake_dbt") == build_plan.INCREMENTAL
    assert_lake_marts_equal_the_file(lake, db, tmp_path / "lake_incremental.duckdb")
    # An hourly build creates no table: each one created stays in the catalog until its
    # snapshots expire, and every statement of every later build reads that catalog.
    assert catalog_tables(lake) == tables_before

    # the lake's build_state says what the pipeline's next plan reads: two complete builds,
    # the second incremental from where the first ended
    con = connect_lake(lake, read_only=True)
    try:
        builds = con.execute(
            "SELECT after_seq, through_seq, full_refresh FROM build_state.builds "
            "WHERE complete ORDER BY recorded_at"
        ).fetchall()
        (newest,) = con.execute("SELECT max(_change_seq) FROM close.calls").fetchone()
    finally:
        con.close()
    assert [(b[0], b[2]) for b in builds] == [(None, True), (builds[0][1], False)]
    assert builds[1][1] == newest > builds[0][1]


@pytest.mark.slow
def test_an_s3_data_path_gives_dbt_a_secret_with_keys_from_its_environment(tmp_path, monkeypatch):
    """profiles.yml's hook: the var lake_s3 (bucket, region, endpoint) and the AWS variables of
    dbt's own environment make one S3 secret; the key never lands in dbt's files."""
    lake = new_lake(tmp_path / "lake")
    connect_lake(lake).close()  # an empty lake: the catalog exists
    secret_value = "s3cr'et\"value-never-written"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAKEYFORTHETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    dbt_vars = json.loads(dbt_launcher.dbt_vars("", "1GB", TIMEZONE, lake=lake))
    # what dbt_vars adds for an s3:// data path (the data path stays a folder: no S3 server here)
    dbt_vars["lake_s3"] = dbt_launcher.dbt_s3_location(
        Lake(lake.catalog, "s3://calls-bucket/prefix/"), {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    )
    show = "select unnest(string_split(secret_string, ';')) as part from duckdb_secrets()"
    work = tmp_path / "dbt"
    result = run_dbt(
        ["show", "--inline", show, "--limit", "30", "--vars", json.dumps(dbt_vars)],
        tmp_path / "unused.duckdb",
        work,
    )
    assert result.success, result.log
    for part in ["type=s3", "scope=s3://calls-", "endpoint=127.0.0.1:9", "key_id=AKIA"]:
        assert f"| {part}" in result.log, part
    assert "| secret=redacted" in result.log
    assert result.log.count("| type=") == 1  # one secret
    written = [
        p
        for p in work.rglob("*")
        if p.is_file() and secret_value in p.read_text("utf-8", "replace")
    ]
    assert not written
