"""The multi-machine lake: a PostgreSQL catalog and an S3 data path, reached over their network
protocols (throwaway servers on loopback: tests/helpers/lake_servers.py), written by this
process while a second process reads it; credentials only from the environment, never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from helpers.lake_files import data_files
from helpers.lake_servers import postgres_server, s3_server  # noqa: F401
from helpers.processes import stop

from close_calls_pipeline.core.lake import Lake, connect_lake, dbt_s3_location, s3_secret_statement
from close_calls_pipeline.core.lake_maintenance import lake_files, maintain

# A reader in its own process: attaches the lake read-only with the credentials of its own
# environment, answers each "read" line with the rows and batches it sees.
READER = textwrap.dedent(
    """
    import json, sys
    from close_calls_pipeline.core.lake import Lake, connect_lake
    con = connect_lake(Lake(sys.argv[1], sys.argv[2]), read_only=True)
    print("attached", flush=True)
    for line in sys.stdin:
        rows, batches = con.execute(
            "SELECT count(*), count(DISTINCT batch) FROM close.calls"
        ).fetchone()
        print(json.dumps([rows, batches]), flush=True)
    """
)
BATCH_ROWS = 3_000  # more than the pipeline's inlining limit (1,000 rows): Parquet files


def _lake(postgres_server, s3_server) -> tuple[Lake, str]:  # noqa: F811
    name = f"lake_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name)
    prefix = f"{name}/data"
    return Lake(postgres_server.catalog(name), f"s3://{s3_server.bucket}/{prefix}/"), prefix


def _insert_batch(con: duckdb.DuckDBPyConnection, batch: int) -> None:
    con.execute(
        "INSERT INTO close.calls SELECT $batch * 100000 + i, $batch FROM range($rows) t(i)",
        {"batch": batch, "rows": BATCH_ROWS},
    )


def test_a_second_process_reads_the_lake_while_this_one_writes(
    postgres_server,  # noqa: F811
    s3_server,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    lake, prefix = _lake(postgres_server, s3_server)
    # libpq (inside DuckDB's postgres extension) reads the catalog password from the environment.
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    monkeypatch.chdir(tmp_path)
    writer = connect_lake(lake, environ=s3_server.environ())
    reader = None
    try:
        writer.execute("CREATE SCHEMA close")
        writer.execute("CREATE TABLE close.calls (id BIGINT, batch INTEGER)")
        _insert_batch(writer, 0)

        env = {**os.environ, **postgres_server.environ(), **s3_server.environ()}
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, lake.catalog, lake.data_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert reader.stdout.readline().strip() == "attached", reader.stderr.read()

        def read() -> list[int]:
            reader.stdin.write("read\n")
            reader.stdin.flush()
            line = reader.stdout.readline()
            assert line, reader.stderr.read()
            return json.loads(line)

        assert read() == [BATCH_ROWS, 1]
        for batch in range(1, 4):
            writer.execute("BEGIN TRANSACTION")
            _insert_batch(writer, batch)
            # mid-transaction: the reader is not blocked and sees the last committed snapshot
            assert read() == [BATCH_ROWS * batch, batch]
            writer.execute("COMMIT")
            assert read() == [BATCH_ROWS * (batch + 1), batch + 1]

        # The data files are objects in the S3 server, under the lake's prefix, and nowhere
        # on local disk.
        files = data_files(writer, "calls", schema="close")
        assert files and all(f.startswith(lake.data_path) for f in files), files
        keys = set(s3_server.keys(prefix))
        assert {f.removeprefix(f"s3://{s3_server.bucket}/") for f in files} <= keys
        assert all(key.endswith(".parquet") for key in keys), keys
        assert not list(tmp_path.rglob("*.parquet"))

        # The secret is in memory, its secret redacted.
        shown = " ".join(str(row) for row in writer.execute("FROM duckdb_secrets()").fetchall())
        assert "redacted" in shown and s3_server.secret_access_key not in shown
    finally:
        writer.close()
        if reader is not None:
            reader.stdin.close()
            stop(reader)


def test_a_wrong_catalog_password_fails_without_showing_it(
    postgres_server,  # noqa: F811
    s3_server,  # noqa: F811
    monkeypatch,
):
    lake, _ = _lake(postgres_server, s3_server)
    wrong = "wrong-password-7781"
    monkeypatch.setenv("PGPASSWORD", wrong)
    with pytest.raises(duckdb.IOException) as from_environment:
        connect_lake(lake, environ=s3_server.environ())
    # A password written into the catalog string (not recommended) is blanked in the error too.
    monkeypatch.delenv("PGPASSWORD")
    in_catalog = Lake(f"{lake.catalog} password={wrong}", lake.data_path)
    with pytest.raises(duckdb.IOException) as from_catalog:
        connect_lake(in_catalog, environ=s3_server.environ())
    for error in (from_environment.value, from_catalog.value):
        assert "password authentication failed" in str(error)
        assert wrong not in str(error) and postgres_server.password not in str(error)
        assert error.__context__ is None  # the unredacted original is not chained
    assert "password=***" in str(from_catalog.value)


def test_the_s3_secret_comes_from_the_aws_variables(s3_server):  # noqa: F811
    environ = {**s3_server.environ(), "AWS_SESSION_TOKEN": "token-0451"}
    statement = s3_secret_statement("s3://bucket/prefix/", environ)
    assert "SCOPE 's3://bucket'" in statement and "USE_SSL false" in statement
    assert "URL_STYLE 'path'" in statement
    con = duckdb.connect()
    try:
        from close_calls_pipeline.core import extensions

        extensions.use_packaged_extensions(con)
        con.execute(statement)
        shown = str(con.execute("FROM duckdb_secrets()").fetchall())
    finally:
        con.close()
    assert s3_server.secret_access_key not in shown and "token-0451" not in shown
    # AWS itself: no endpoint, so DuckDB's defaults (TLS, virtual-host URLs).
    on_aws = s3_secret_statement("s3://b/p", {"AWS_DEFAULT_REGION": "eu-west-1"})
    assert "REGION 'eu-west-1'" in on_aws and "ENDPOINT" not in on_aws
    # dbt gets the location, never the keys (profiles.yml reads them from dbt's environment).
    entry = dbt_s3_location(Lake("sqlite:x", "s3://bucket/p"), environ)
    assert entry["scope"] == "s3://bucket" and "secret" not in entry and "key_id" not in entry
    assert s3_server.secret_access_key not in json.dumps(entry)
    assert entry["endpoint"] == s3_server.endpoint_url.removeprefix("http://")
    assert dbt_s3_location(Lake("sqlite:x", str(Path("data"))), environ) is None


@pytest.mark.slow
def test_dbt_writes_to_the_s3_lake_with_the_secret_from_its_environment(
    s3_server,  # noqa: F811
    tmp_path,
):
    """The project's own profile (its `lake` output) with `dbt_vars(lake=)`: dbt takes the keys
    from its environment and writes a model's Parquet file into the S3 server; neither the vars,
    the profile nor dbt's logs hold the secret."""
    from close_calls_pipeline.core import config
    from close_calls_pipeline.core.dbt_launcher import dbt_vars, real_dbt_executable

    prefix = f"dbt_{uuid.uuid4().hex[:8]}"
    lake = Lake(f"sqlite:{tmp_path / 'catalog.sqlite'}", f"s3://{s3_server.bucket}/{prefix}/")
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: lake_probe\nversion: '1.0'\nprofile: close_calls\nconfig-version: 2\n"
    )
    (project / "models" / "answer.sql").write_text(
        # more rows than DuckLake inlines into the catalog: a Parquet file
        "{{ config(materialized='table') }} SELECT range AS answer FROM range(5000)"
    )
    variables = dbt_vars("", "1GB", lake=lake, environ=s3_server.environ())
    assert s3_server.secret_access_key not in variables
    done = subprocess.run(
        [real_dbt_executable(), "run", "--project-dir", str(project), "--profiles-dir",
         str(config.DBT_PROJECT_DIR), "--target-path", str(project / "target"),
         "--log-path", str(project / "target"), "--vars", variables],
        env={**os.environ, **s3_server.environ(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert any(key.endswith(".parquet") for key in s3_server.keys(prefix))
    reader = connect_lake(lake, read_only=True, environ=s3_server.environ())
    try:
        assert reader.execute("SELECT sum(answer) FROM main.answer").fetchone() == (12497500,)
    finally:
        reader.close()
    written = [done.stdout, done.stderr]
    written += [p.read_text(errors="replace") for p in project.rglob("*") if p.is_file()]
    assert not any(s3_server.secret_access_key in text for text in written)


def test_maintenance_on_postgres_and_s3_deletes_the_objects_no_snapshot_needs(
    postgres_server,  # noqa: F811
    s3_server,  # noqa: F811
    monkeypatch,
):
    lake, prefix = _lake(postgres_server, s3_server)
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    con = connect_lake(lake, environ=s3_server.environ())
    try:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.calls (id BIGINT, batch INTEGER)")
        for batch in range(6):
            _insert_batch(con, batch)
            # half a batch: more rows than DuckLake inlines, so a delete file
            con.execute("DELETE FROM close.calls WHERE batch = $b AND id % 2 = 0", {"b": batch})
        rows = con.execute("SELECT * FROM close.calls ORDER BY id").fetchall()
        objects_before = len(s3_server.keys(prefix))
        assert lake_files(con).files == objects_before > 6

        report = maintain(con, retention_days=0, file_grace=timedelta(0))
        assert con.execute("SELECT * FROM close.calls ORDER BY id").fetchall() == rows
        assert len(s3_server.keys(prefix)) == report.after.files < objects_before
        assert report.after.snapshots == 1
    finally:
        con.close()


def test_a_writer_with_little_memory_writes_parquet_files_to_s3(s3_server, tmp_path):  # noqa: F811
    """DuckDB buffers each part of an S3 upload in memory: 80 MB parts (its default) do not fit
    beside the sync's own data under its memory limit (128 MB); our connections' parts do."""
    prefix = f"memory_{uuid.uuid4().hex[:8]}"
    lake = Lake(f"sqlite:{tmp_path / 'catalog.sqlite'}", f"s3://{s3_server.bucket}/{prefix}/")
    con = connect_lake(lake, memory_limit="64MB", environ=s3_server.environ())
    try:
        con.execute("CREATE TABLE numbers (n BIGINT)")
        con.execute("INSERT INTO numbers SELECT * FROM range(5000)")  # beyond inlining: a file
        assert con.execute("SELECT sum(n) FROM numbers").fetchone() == (12497500,)
    finally:
        con.close()
    assert any(key.endswith(".parquet") for key in s3_server.keys(prefix))
