"""The warehouse in a DuckLake (docs/lake.md): a SQLite catalog and a local data folder.

* settings: both lake settings or neither, a password never in the catalog, relative paths
  made absolute against the project; `close-calls start-over` leaves a lake alone;
* the lake holds the file's contract: the same schemas, tables and columns; it belongs to one
  organization; `close-calls erase` erases in it; a record served broken is quarantined;
* change numbers (`_change_seq`) grow with every landing, in a file (one made by an earlier
  release with a sequence too) and in a lake alike;
* a sync into the lake equals the sandbox's truth, and a second writer's concurrent landing
  never shows a call twice (on SQLite, DuckDB and PostgreSQL catalogs: the last on the servers
  of tests/helpers/lake_servers.py);
* (slow) `close-calls run` into a lake while another process reads it: the reader never fails
  and never sees half a batch; a run killed with SIGKILL mid-sync, then another run, equals the
  truth with no duplicate; the readonly_copy step writes nothing;
* (slow) with dbt: the marts are built in the lake (needs the dbt profile's lake target).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from helpers.lake_files import data_files, row_groups
from helpers.lake_servers import postgres_server, s3_server  # noqa: F401
from helpers.truth import (
    assert_warehouse_matches_truth,
    expected_payload,
    mart_counts,
    truth_counts,
)

from close_calls_pipeline.core import config, locks, warehouse
from close_calls_pipeline.core import lake as lake_module
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.identity import (
    Organization,
    WrongOrganizationError,
    check_organization,
)
from close_calls_pipeline.core.lake import Lake, attach_statement, connect_lake
from close_calls_pipeline.core.settings import PipelineSettings
from close_calls_pipeline.core.sync import sync_calls
from close_calls_pipeline.dagster_component.component import CloseCallsComponent, build_definitions
from close_calls_pipeline.dagster_component.keys import PIPELINE_JOB

VENV_BIN = Path(sys.executable).parent
READER = Path(__file__).parent / "helpers" / "lake_reader.py"
KEY = "test-key"
REPO_ROOT = Path(__file__).resolve().parents[1]


def a_lake(folder: Path) -> Lake:
    return Lake(f"sqlite:{folder / 'catalog.sqlite'}", str(folder / "data"))


def columns(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable "
        "FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'close' "
        "ORDER BY table_name, ordinal_position"
    ).fetchall()


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"lake_catalog": "sqlite:c.sqlite"}, "lake_data_path"),
        ({"lake_data_path": "d"}, "lake_catalog"),
    ],
)
def test_a_lake_needs_both_settings_and_the_error_names_the_missing_one(given, missing):
    with pytest.raises(ValueError, match=f"{missing} is not set"):
        PipelineSettings(**given)


def test_a_catalog_with_a_password_is_refused_and_relative_paths_are_made_absolute(tmp_path):
    with pytest.raises(ValueError, match="PGPASSWORD"):
        PipelineSettings(lake_catalog="postgres:dbname=calls password=hunter2", lake_data_path="d")
    settings = PipelineSettings(
        lake_catalog="sqlite:lake/catalog.sqlite", lake_data_path="lake/data"
    ).resolved(tmp_path)
    root = tmp_path.resolve()
    assert settings.lake == Lake(
        f"sqlite:{root / 'lake' / 'catalog.sqlite'}", str(root / "lake/data")
    )
    remote = PipelineSettings(
        lake_catalog="postgres:dbname=calls host=db", lake_data_path="s3://b/p"
    )
    assert remote.resolved(tmp_path).lake == Lake("postgres:dbname=calls host=db", "s3://b/p")
    assert PipelineSettings(lake_catalog=" ", lake_data_path="").lake is None  # unset variables


def test_close_calls_run_with_half_a_lake_starts_nothing_and_shows_no_key(tmp_path, monkeypatch):
    from close_calls_pipeline.cli.run import run_pipeline

    monkeypatch.setenv("CLOSE_API_KEY", "api_secret_never_shown")
    out = io.StringIO()
    code = run_pipeline(project_dir=tmp_path, lake_catalog="sqlite:lake/catalog.sqlite", out=out)
    assert code == 1
    assert "lake_data_path is not set" in out.getvalue()
    assert "api_secret_never_shown" not in out.getvalue()
    assert not (tmp_path / "lake").exists()


def test_start_over_leaves_a_lake_alone_and_says_what_to_do(tmp_path, monkeypatch, capsys):
    from close_calls_pipeline.cli.main import main

    lake = a_lake(tmp_path / "lake")
    warehouse.connect(lake).close()
    monkeypatch.setenv("CLOSE_CALLS_LAKE_CATALOG", lake.catalog)  # through defs.yaml
    monkeypatch.setenv("CLOSE_CALLS_LAKE_DATA_PATH", lake.data_path)
    before = sorted(p.name for p in (tmp_path / "lake").iterdir())
    assert main(["start-over", "--project-dir", str(tmp_path)]) == 1
    assert "CLOSE_CALLS_LAKE_CATALOG" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == before


def test_a_lake_writer_gets_at_least_the_lake_memory_floor(tmp_path):
    """DuckLake's updates of earlier calls need 128 MiB buffers: the file's 128 MB would fail
    every run that soft-deletes a call in a large lake."""
    lake = a_lake(tmp_path / "lake")
    for asked, expected in (("128MB", "488.2 MiB"), ("2GB", "1.8 GiB")):
        con = warehouse.connect(lake, memory_limit=asked)
        try:
            assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == expected
        finally:
            con.close()


def test_every_writer_writes_the_lake_in_bounded_row_groups(tmp_path):
    """DuckDB holds a Parquet row group in memory per thread while it writes it: at its default
    (122,880 rows), dbt's first build of `fct_calls` in a 1,000,000-call lake ran out of its 512
    MB. The pipeline's writer bounds them lake-wide, in the catalog, so a connection that only
    attaches the lake, as dbt's does, writes 40,000 rows in several row groups (one without)."""
    lake = a_lake(tmp_path / "lake")
    warehouse.connect(lake).close()
    con = connect_lake(lake)  # attached as dbt attaches it: nothing of the pipeline's prepare
    try:
        con.execute("CREATE TABLE close_calls.main.wide AS SELECT range AS x FROM range(40000)")
        count, largest, _ = row_groups(con, data_files(con, "wide"))
    finally:
        con.close()
    assert count > 1 and largest < 2 * config.LAKE_ROW_GROUP_ROWS


def test_every_connection_attaches_a_sqlite_catalog_in_wal_with_a_busy_timeout():
    sqlite = attach_statement(Lake("sqlite:/srv/c.sqlite", "/srv/data"), read_only=True)
    assert "META_JOURNAL_MODE 'WAL'" in sqlite and "META_BUSY_TIMEOUT" in sqlite
    assert sqlite.endswith("READ_ONLY)")
    postgres = attach_statement(Lake("postgres:dbname=calls host=db", "s3://b/p"))
    assert "META_" not in postgres and "READ_ONLY" not in postgres


def test_one_run_at_a_time_per_lake_on_a_machine(tmp_path):
    lake = a_lake(tmp_path / "lake")
    anchor = warehouse.run_lock_anchor(tmp_path / "data" / "close_calls.duckdb", lake)
    assert anchor == warehouse.run_lock_anchor(tmp_path / "data" / "sandbox.duckdb", lake)
    other = a_lake(tmp_path / "other")
    assert anchor != warehouse.run_lock_anchor(tmp_path / "data" / "close_calls.duckdb", other)
    second_run = (
        "import sys; from close_calls_pipeline.core import locks\n"
        "try:\n    locks.acquire_run_lock(sys.argv[1])\n"
        "except locks.RunInProgressError as error:\n    print('refused:', error)"
    )
    with locks.acquire_run_lock(anchor, owner="a run into the lake"):
        done = subprocess.run(
            [sys.executable, "-c", second_run, str(anchor)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    assert done.stdout.startswith("refused:") and "a run into the lake" in done.stdout


def test_inside_one_instance_per_lake_connections_share_a_duckdb_but_not_transactions(tmp_path):
    """A run's connections to a lake share one DuckDB instance (a new one loads DuckLake and its
    catalog's extension: about 0.13 s), each in its own transaction; outside, each is its own."""
    lake = a_lake(tmp_path / "lake")
    writer = warehouse.connect(lake)
    try:
        writer.execute("CREATE TABLE probe (x INTEGER)")
        writer.execute("CREATE TABLE memory.main.instance_mark (x INTEGER)")
        other = warehouse.connect(lake)
        with pytest.raises(duckdb.CatalogException):  # another instance
            other.execute("FROM memory.main.instance_mark")
        other.close()
    finally:
        writer.close()

    with lake_module.one_instance_per_lake():
        writer, other = warehouse.connect(lake), warehouse.connect(lake, memory_limit="2GB")
        reader = connect_lake(lake, read_only=True)
        writer.execute("CREATE TABLE memory.main.instance_mark (x INTEGER)")
        assert other.execute("FROM memory.main.instance_mark").fetchall() == []  # one instance
        with pytest.raises(duckdb.CatalogException):  # a read-only attach is another
            reader.execute("FROM memory.main.instance_mark")
        for con in (writer, other, reader):
            assert con.execute("SELECT current_database()").fetchone() == ("close_calls",)
        assert writer.execute("SELECT current_setting('memory_limit')").fetchone() == ("1.8 GiB",)

        writer.execute("BEGIN")
        writer.execute("INSERT INTO probe VALUES (1)")
        assert other.execute("SELECT count(*) FROM probe").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM probe").fetchone() == (0,)
        writer.execute("COMMIT")
        assert other.execute("SELECT count(*) FROM probe").fetchone() == (1,)
        assert reader.execute("SELECT count(*) FROM probe").fetchone() == (1,)
        writer.close()  # closes this connection only
        assert other.execute("SELECT count(*) FROM probe").fetchone() == (1,)
    # the instances close with the outermost `with`, and every connection still open on them
    with pytest.raises(duckdb.ConnectionException):
        other.execute("SELECT 1")
    assert lake_module._shared is None


def test_a_dagster_run_into_a_lake_opens_one_duckdb_instance_for_all_its_steps(
    tmp_path, sandbox, monkeypatch
):
    """The organization check, the sync, the reference tables and the checks all write through
    the warehouse resource: one DuckDB instance for the run, closed when it ends."""
    opened = []
    new_instance = lake_module._new_instance

    def counted(lake, read_only, *rest):
        opened.append("read-only" if read_only else "writer")
        return new_instance(lake, read_only, *rest)

    monkeypatch.setattr(lake_module, "_new_instance", counted)
    lake = a_lake(tmp_path / "lake")
    settings = CloseCallsComponent(
        duckdb_path=str(tmp_path / "data" / "close_calls.duckdb"),
        lake_catalog=lake.catalog, lake_data_path=lake.data_path,
        api_key=KEY, base_url=sandbox.base_url, dbt_marts=False,
    ).settings(REPO_ROOT)  # fmt: skip
    result = (
        build_definitions(settings)
        .resolve_job_def(PIPELINE_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and all(e.event_specific_data.passed for e in checks)
    assert opened == ["writer"]
    assert lake_module._shared is None  # closed with the run
    con = connect_lake(lake, read_only=True)
    try:
        assert_warehouse_matches_truth(con, sandbox.store)
    finally:
        con.close()


# --- the contract ------------------------------------------------------------------------------


def test_the_lake_has_the_same_tables_and_columns_as_the_file(tmp_path):
    file_con = warehouse.connect(str(tmp_path / "warehouse.duckdb"))
    lake_con = warehouse.connect(a_lake(tmp_path / "lake"))
    try:
        in_file, in_lake = columns(file_con), columns(lake_con)
    finally:
        file_con.close()
        lake_con.close()
    assert in_lake == in_file
    assert ("close", "calls", "_change_seq", "BIGINT", "YES") in in_lake
    again = warehouse.connect(a_lake(tmp_path / "lake"))  # the schema script is idempotent
    try:
        (snapshots,) = again.execute(
            "SELECT count(*) FROM ducklake_snapshots('close_calls')"
        ).fetchone()
        again_counter = again.execute("SELECT * FROM close.call_change_counter").fetchall()
    finally:
        again.close()
    assert snapshots == 2, "creating the schema is one snapshot; opening it again adds none"
    assert again_counter == [(0,)]


@pytest.mark.parametrize("mode", ["file", "older file", "lake"])
def test_every_landing_numbers_its_changes_above_every_earlier_one(tmp_path, sandbox, mode):
    """With a sequence and its DEFAULT left by an earlier release, the explicit numbers win."""
    floor = 0
    if mode == "older file":  # numbered by a sequence, the column's default: 500 given
        old = warehouse.connect(str(tmp_path / "warehouse.duckdb"))
        old.execute("DROP TABLE close.call_change_counter")
        old.execute("CREATE SEQUENCE close.call_change_seq START 500")
        old.execute(
            "ALTER TABLE close.calls ALTER COLUMN _change_seq "
            "SET DEFAULT nextval('close.call_change_seq')"
        )
        old.execute("INSERT INTO close.calls (id, _loaded_at) VALUES ('acti_gone', now())")
        old.close()
        floor = 500
    target = a_lake(tmp_path / "lake") if mode == "lake" else str(tmp_path / "warehouse.duckdb")
    con = warehouse.connect(target)
    con.execute("DELETE FROM close.calls WHERE id = 'acti_gone'")
    try:
        with CloseClient(KEY, sandbox.base_url) as client:
            sync_calls(client, con)
            first = con.execute(
                "SELECT min(_change_seq), max(_change_seq) FROM close.calls"
            ).fetchone()
            changed = sandbox.store.call_ids()[:3]
            for call_id in changed:
                sandbox.store.update_call(call_id)
            doomed = sandbox.store.call_ids()[-1]
            sandbox.store.delete_call(doomed)
            sandbox.store.advance(120)
            sync_calls(client, con)
        assert first[0] is not None and first[0] > floor
        later = dict(
            con.execute(
                "SELECT id, _change_seq FROM close.calls WHERE id IN (SELECT unnest($ids))",
                {"ids": [*changed, doomed]},
            ).fetchall()
        )
        assert all(number > first[1] for number in later.values()), later
        assert_warehouse_matches_truth(con, sandbox.store)
    finally:
        con.close()


# --- the sync's guarantees in the lake ---------------------------------------------------------


def test_a_record_served_broken_is_quarantined_in_the_lake_and_the_rest_lands(tmp_path, sandbox):
    store = sandbox.store
    broken = store.call_ids()[0]
    body = orjson.dumps(expected_payload(store.truth()[broken]))
    store.put_raw_call_bytes(broken, body[: len(body) // 2])  # cut in the middle
    con = warehouse.connect(a_lake(tmp_path / "lake"))
    try:
        with CloseClient(KEY, sandbox.base_url) as client:
            summary = sync_calls(client, con)
        rejected = con.execute("SELECT object_id FROM close.rejected_records").fetchall()
        live = {r[0] for r in con.execute("SELECT id FROM close.calls").fetchall()}
        mark = warehouse.high_water_mark(con)
    finally:
        con.close()
    assert summary.records_rejected == 1 and rejected == [(broken,)]
    assert live == set(store.truth()) - {broken} and mark is not None


def _two_writers(lake: Lake, kind: str):
    """Two connections writing the lake: two DuckDBs, as separate processes' or machines', on a
    SQLite or PostgreSQL catalog; two cursors of one DuckDB on a DuckDB catalog (a file one
    DuckDB opens at a time), where DuckLake's own conflict check decides."""
    if kind != "duckdb catalog":
        return warehouse.connect(lake), warehouse.connect(lake)
    first = warehouse.connect(lake)
    second = first.cursor()  # another connection to the same DuckDB, the lake attached
    second.execute("USE close_calls")
    second.execute("SET TimeZone = 'UTC'")
    return first, second


def _conflict_lake(kind: str, folder: Path, request, monkeypatch) -> Lake:
    """A new lake of the catalog kind; "postgres": the throwaway PostgreSQL server as its
    catalog and the S3 server as its data path, credentials in the environment."""
    if kind == "sqlite":
        return Lake(f"sqlite:{folder / 'catalog.sqlite'}", str(folder / "data"))
    if kind == "duckdb catalog":
        return Lake(str(folder / "meta.ducklake"), str(folder / "data"))
    postgres, s3 = request.getfixturevalue("postgres_server"), request.getfixturevalue("s3_server")
    database = postgres.create_database(f"conflict_{uuid.uuid4().hex[:8]}")
    for name, value in {**postgres.environ(), **s3.environ()}.items():
        monkeypatch.setenv(name, value)
    return Lake(postgres.catalog(database), f"s3://{s3.bucket}/{database}/")


@pytest.mark.parametrize("kind", ["sqlite", "duckdb catalog", "postgres"])
def test_a_second_writer_landing_the_same_calls_at_once_fails_and_shows_nothing_twice(
    tmp_path, sandbox, kind, request, monkeypatch
):
    """The run lock keeps two runs on one machine apart. Two writers elsewhere that land at
    once both take a change number (one row): the second commit fails, rolled back whole."""
    lake = _conflict_lake(kind, tmp_path, request, monkeypatch)
    first, second = _two_writers(lake, kind)
    with CloseClient(KEY, sandbox.base_url) as client:
        sync_calls(client, first)
    (before,) = first.execute("SELECT count(*) FROM close.calls").fetchone()
    new_calls = first.execute(
        "SELECT * EXCLUDE (_raw_hash, _change_seq) REPLACE ('new_' || id AS id) "
        "FROM close.calls ORDER BY id LIMIT 5"
    ).to_arrow_table()
    no_utterances = first.execute(
        "SELECT * FROM close.call_transcript_utterances LIMIT 0"
    ).to_arrow_table()
    now = datetime.now(UTC)
    for writer in (first, second):
        writer.execute("BEGIN TRANSACTION")
        assert warehouse.land_calls(writer, new_calls, no_utterances, own_since=now).inserted == 5
    first.execute("COMMIT")
    with pytest.raises(duckdb.TransactionException):
        second.execute("COMMIT")
    second.close()
    try:  # a new transaction of the writer that committed: the last snapshot
        calls, ids = first.execute(
            "SELECT count(*), count(DISTINCT id) FROM close.calls"
        ).fetchone()
    finally:
        first.close()
    assert calls == ids == before + 5


def test_a_lake_belongs_to_one_organization(tmp_path):
    lake = a_lake(tmp_path / "lake")
    alpha = Organization("orga_alpha", "Alpha", is_sandbox=False)
    beta = Organization("orga_beta", "Beta", is_sandbox=False)
    assert check_organization(lake, alpha, api_base_url="https://api.close.com/api/v1") == alpha
    con = warehouse.connect(lake)
    con.execute(
        "INSERT INTO close.outcomes (id, organization_id, _loaded_at) "
        "VALUES ('outcome_1', 'orga_alpha', now())"
    )
    con.close()
    with pytest.raises(WrongOrganizationError, match="CLOSE_CALLS_LAKE_CATALOG"):
        check_organization(lake, beta, api_base_url="https://api.close.com/api/v1")
    assert check_organization(lake, alpha, api_base_url=None) == alpha


def test_erase_removes_personal_data_from_the_lake(tmp_path, sandbox, monkeypatch):
    from close_calls_pipeline.cli.main import main

    lake = a_lake(tmp_path / "lake")
    con = warehouse.connect(lake)
    with CloseClient(KEY, sandbox.base_url) as client:
        sync_calls(client, con)
    (call_id,) = con.execute(
        "SELECT id FROM close.calls WHERE remote_phone IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchone()
    con.close()
    monkeypatch.setenv("CLOSE_CALLS_LAKE_CATALOG", lake.catalog)
    monkeypatch.setenv("CLOSE_CALLS_LAKE_DATA_PATH", lake.data_path)
    assert main(["erase", "--call-id", call_id, "--project-dir", str(tmp_path)]) == 0
    reader = connect_lake(lake, read_only=True)
    try:
        phone, note = reader.execute(
            "SELECT remote_phone, note FROM close.calls WHERE id = ?", [call_id]
        ).fetchone()
        (others,) = reader.execute(
            "SELECT count(*) FROM close.calls WHERE remote_phone IS NOT NULL"
        ).fetchone()
    finally:
        reader.close()
    assert (phone, note) == (None, None) and others > 0
    assert not list((tmp_path / "data").glob("*.duckdb")), "no file, no read-only copy"


# --- through `close-calls run` (slow) ----------------------------------------------------------

PYPROJECT = """\
[project]
name = "{name}"
version = "0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{name}"
"""

DEFINITIONS_PY = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

DEFS_YAML = """\
type: close_calls_pipeline.CloseCallsComponent
attributes:
  api_key: "{{{{ env.CLOSE_API_KEY }}}}"
  base_url: "{{{{ env.CLOSE_API_BASE_URL }}}}"
  lake_catalog: "{{{{ env.CLOSE_CALLS_LAKE_CATALOG }}}}"
  lake_data_path: "{{{{ env.CLOSE_CALLS_LAKE_DATA_PATH }}}}"
  dbt_marts: {dbt_marts}
  workers: 2
"""


def a_project(folder: Path, dbt_marts: bool) -> Path:
    """A dg project whose component reads the key, base URL and lake from the environment."""
    name = f"lake_project_{os.getpid()}_{int(dbt_marts)}"
    component = folder / name / "defs" / "calls"
    component.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    (folder / name / "__init__.py").write_text("")
    (folder / name / "defs" / "__init__.py").write_text("")
    (folder / name / "definitions.py").write_text(DEFINITIONS_PY)
    (component / "defs.yaml").write_text(DEFS_YAML.format(dbt_marts=str(dbt_marts).lower()))
    return folder


def shell(project: Path, server, **extra: str) -> dict[str, str]:
    """A fresh shell with the sandbox's key and URL, and what else is given."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "DAGSTER_HOME": str(project / "dagster_home"),
        "CLOSE_API_KEY": KEY,
        "CLOSE_API_BASE_URL": server.base_url,
        **extra,
    }


def close_calls_run(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "close-calls"), "run", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: killed whole, as a container is
    )


def assert_reads_were_whole(seen: list[dict]) -> list[int]:
    """A reader's reads never failed, never showed a call twice or a call without its
    utterances; returns the distinct call counts it saw, in order."""
    errors = [s["error"] for s in seen if "error" in s]
    assert not errors, errors[:3]
    assert all(s["repeated_ids"] == 0 for s in seen)
    half = [s for s in seen if s["utterances"] != s["listed_utterances"]]
    assert not half, f"calls visible without their utterances (or the reverse): {half[:3]}"
    return sorted({s["calls"] for s in seen})


class Reader:
    """tests/helpers/lake_reader.py in its own process; what it saw, line by line."""

    def __init__(self, lake: Lake):
        self.process = subprocess.Popen(
            [sys.executable, str(READER), lake.catalog, lake.data_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seen: list[dict] = []
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.seen == [{"attached": True}], self.process.stderr

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.seen.append(json.loads(line))

    def calls_seen(self) -> int:
        return max((s.get("calls", 0) for s in self.seen), default=0)

    def stop(self) -> list[dict]:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self._thread.join(timeout=10)
        return self.seen[1:]


@pytest.mark.slow
def test_a_run_into_a_lake_killed_mid_sync_then_run_again_equals_the_truth_while_a_reader_reads(
    make_sandbox, tmp_path
):
    server = make_sandbox(calls=12_000, seed=71, latency_ms=100, api_key=KEY)
    store = server.store
    lake = a_lake(tmp_path / "lake")
    project = a_project(tmp_path / "project", dbt_marts=False)
    warehouse.connect(lake).close()  # an empty lake, as a team would make it first
    reader = Reader(lake)
    try:
        # 1. given on the command line; killed with SIGKILL once a first batch is visible (a
        # batch is 8,192 calls: SyncOptions.batch_size)
        first = close_calls_run(
            project, shell(project, server),
            "--lake-catalog", lake.catalog, "--lake-data-path", lake.data_path,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while reader.calls_seen() == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.stdout.read()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = reader.calls_seen()
        assert 0 < killed_at < len(store.truth()), "the kill did not land mid-sync"

        # 2. from the environment (defs.yaml's templates): resumes, ends whole
        env = shell(
            project, server,
            CLOSE_CALLS_LAKE_CATALOG=lake.catalog, CLOSE_CALLS_LAKE_DATA_PATH=lake.data_path,
        )  # fmt: skip
        second = close_calls_run(project, env)
        output = second.communicate(timeout=300)[0]
        assert second.returncode == 0, output[-3000:]
        assert "DuckLake ducklake:sqlite:" in output

        # 3. an hour of activity in Close, then the incremental run
        store.mutate_random(random.Random(7), new=20, updated=30, deleted=5)
        store.advance(3600)
        third = close_calls_run(project, env)
        output = third.communicate(timeout=300)[0]
        assert third.returncode == 0, output[-3000:]
        assert "mode=incremental" in output, output[-3000:]
    finally:
        seen = reader.stop()

    counts = assert_reads_were_whole(seen)
    assert len(counts) >= 3 and counts[0] < killed_at < counts[-1], counts  # read throughout
    con = connect_lake(lake, read_only=True)
    try:
        assert_warehouse_matches_truth(con, store)
        modes = [
            m
            for (m,) in con.execute(
                "SELECT mode FROM close.sync_state ORDER BY finished_at"
            ).fetchall()
        ]
    finally:
        con.close()
    assert modes == ["backfill", "incremental"]
    assert not list((project / "data").glob("*.duckdb")), "no warehouse file, no read-only copy"


@pytest.mark.slow
def test_close_calls_run_and_dg_launch_build_the_marts_in_the_lake(make_sandbox, tmp_path):
    server = make_sandbox(calls=300, seed=72, api_key=KEY)
    lake = a_lake(tmp_path / "lake")
    project = a_project(tmp_path / "project", dbt_marts=True)
    env = shell(
        project, server,
        CLOSE_CALLS_LAKE_CATALOG=lake.catalog, CLOSE_CALLS_LAKE_DATA_PATH=lake.data_path,
    )  # fmt: skip
    run = close_calls_run(project, env)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    assert mart_counts(lake) == truth_counts(server.store)
    # neither the sync nor dbt opened a DuckDB file: everything is in the lake
    assert not list(project.rglob("*.duckdb")), list(project.rglob("*.duckdb"))
    server.store.mutate_random(random.Random(8), new=5, updated=10, deleted=2)
    server.store.advance(3600)
    (project / "dagster_home").mkdir(exist_ok=True)
    launched = subprocess.run(
        [str(VENV_BIN / "dg"), "launch", "--assets", "*"],
        cwd=project,
        env={**env, "VIRTUAL_ENV": str(VENV_BIN.parent), "PATH": f"{VENV_BIN}:{env['PATH']}"}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert launched.returncode == 0, (launched.stdout + launched.stderr)[-3000:]
    con = connect_lake(lake, read_only=True)
    try:
        assert_warehouse_matches_truth(con, server.store)
    finally:
        con.close()
    assert mart_counts(lake) == truth_counts(server.store)
