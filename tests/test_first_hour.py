"""The first hour of a new user: what `close-calls run` prints works when pasted into a fresh shell,
the queries of the README and of docs/ return rows, the CLI explains itself, and nothing grows
without bound.

`close-calls run` runs as a user would start it (the venv's script, no venv on PATH) against the
embedded sandbox, with the warehouse and the Dagster instance in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
from helpers.processes import run_ok

from close_calls_pipeline.cli.main import build_parser
from close_calls_pipeline.core import config

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TARGET = config.dbt_target_path(REPO_ROOT)  # the runs below work in the repository's folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """A fresh shell's environment: no venv on PATH, no project settings but those given."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **extra,
    }


def close_calls_run(env: dict[str, str], *args: str) -> str:
    return run_ok(
        [str(VENV_BIN / "close-calls"), "run", *args], cwd=REPO_ROOT, env=env, timeout=400
    ).stdout


# Left out of the size, kept in the file list: dbt rewrites these whole in each run, their size set
# by what that run built (a full build's results and graph hold every node, an incremental
# build's 9), and appends to its log (a full build's warnings), which it rotates at 10 MB. The
# live sandbox decides what a run builds: a slow run meets more of its changes.
_SIZE_SET_BY_THE_RUN = {"manifest.json", "run_results.json", "graph.gpickle", "dbt.log"}


def target_size() -> tuple[set[str], int]:
    files = [p for p in TARGET.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files if p.name not in _SIZE_SET_BY_THE_RUN)
    return {str(p.relative_to(TARGET)) for p in files}, size


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_hour")
    settings = {
        "CLOSE_CALLS_DUCKDB": str(tmp / "data" / "sandbox.duckdb"),  # a keyless run's default
        "DAGSTER_HOME": str(tmp / "dagster_home"),
    }
    output = close_calls_run(clean_env(**settings), "--sandbox-calls", "300")
    return output, settings, tmp


def printed_commands(output: str) -> dict[str, str]:
    lines = output.splitlines()
    ui = next(line.split(": ", 1)[1] for line in lines if line.startswith("Open the UI"))
    start = lines.index("Query the marts:") + 1
    queries = [line.strip() for line in lines[start:] if line.startswith("  ")]
    return {"ui": ui, **{f"query {i}": q for i, q in enumerate(queries)}}


def test_the_summary_names_what_it_made(first_run):
    output, settings, _ = first_run
    assert "None" not in output.split("\nSummary\n")[1]
    assert f"DuckDB file: {settings['CLOSE_CALLS_DUCKDB']}" in output
    report = re.search(r"^Call report: (.+)$", output, re.MULTILINE)
    assert report and Path(report.group(1)).is_file()
    assert re.search(
        r"^  \d+ calls point at outcomes deleted in Close: expected", output, re.MULTILINE
    )
    assert "DEBUG" not in output  # quiet by default
    assert " 0 more deleted" not in output  # a clause with nothing to say is left out
    assert f"Syncing the embedded sandbox (organization orga_sandbox_{config.SANDBOX_SEED})" in (
        output
    )


def test_every_printed_query_works_in_a_fresh_shell(first_run):
    output, _, _ = first_run
    queries = {k: v for k, v in printed_commands(output).items() if k.startswith("query")}
    assert queries
    for name, command in queries.items():
        done = run_ok(["bash", "-c", command], cwd=REPO_ROOT, env=clean_env(), timeout=60)
        assert "call_date" in done.stdout, (name, done.stdout[-2000:])


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_the_printed_ui_command_shows_the_run(first_run):
    output, _, _ = first_run
    command = printed_commands(output)["ui"]
    assert f"close-calls ui --project-dir {REPO_ROOT}" in command
    port = free_port()
    process = subprocess.Popen(
        ["bash", "-c", f"{command} --port {port}"],
        cwd="/",
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, runs = time.monotonic() + 150, None
        while time.monotonic() < deadline and not runs:
            time.sleep(2)
            try:
                answer = _graphql(
                    port, "{ runsOrError { ... on Runs { results { runId status jobName } } } }"
                )
                runs = answer["data"]["runsOrError"]["results"]
            except OSError:
                continue
        assert runs, "the UI did not answer, or shows no run"
        assert any(
            r["jobName"] == "close_calls_pipeline" and r["status"] == "SUCCESS" for r in runs
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


DOCUMENTED_PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def documented_queries() -> list[tuple[str, str]]:
    """(page, statement) for every SQL statement of the ```sql blocks of the README and of every
    page under docs/, so that no page shows a query that does not run."""
    statements = []
    for page in DOCUMENTED_PAGES:
        for block in re.findall(r"```sql\n(.*?)```", page.read_text(), re.DOTALL):
            lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
            statements += [
                (page.relative_to(REPO_ROOT).as_posix(), s.strip())
                for s in "\n".join(lines).split(";")
                if s.strip()
            ]
    return statements


def test_the_documented_queries_include_the_readme_and_the_docs():
    pages = {page for page, _ in documented_queries()}
    assert "README.md" in pages
    assert any(page.startswith("docs/") for page in pages), pages


def test_every_documented_query_returns_rows_on_the_sandbox(first_run):
    _, settings, _ = first_run
    queries = documented_queries()
    assert len(queries) >= 3
    con = duckdb.connect(settings["CLOSE_CALLS_DUCKDB"], read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for page, query in queries:
            assert con.execute(query).fetchall(), (page, query)
    finally:
        con.close()


def test_documented_queries_round_their_floats(first_run):
    """A documented query prints what a reader expects: exact DECIMALs, or DOUBLEs rounded in SQL
    (to at most 4 decimals), never a float's binary noise such as 839.3000000000002."""
    _, settings, _ = first_run
    con = duckdb.connect(settings["CLOSE_CALLS_DUCKDB"], read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for page, query in documented_queries():
            for row in con.execute(query).fetchall():
                unrounded = [v for v in row if isinstance(v, float) and round(v, 4) != v]
                assert not unrounded, (page, query, unrounded)
    finally:
        con.close()


def test_every_view_reads_in_the_readonly_copy(first_run):
    """The copy is opened under its own name: a view that named the warehouse's catalog
    ("close_calls"."staging"...) would fail to bind there."""
    _, settings, _ = first_run
    copy = config.readonly_copy_path(settings["CLOSE_CALLS_DUCKDB"])
    con = duckdb.connect(str(copy), read_only=True)
    try:
        views = con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
        ).fetchall()
        assert len(views) >= 4, views  # the staging views at least
        for schema, view in views:
            con.execute(f'SELECT count(*) FROM "{schema}"."{view}"').fetchone()
    finally:
        con.close()


@pytest.mark.timeout(900)  # three whole runs
def test_runs_keep_the_dbt_target_folder_bounded(first_run):
    _, settings, _ = first_run
    env = clean_env(**settings)
    sizes = []
    for i in range(3):  # the fixture's run was the first
        output = close_calls_run(env, *(["--backfill-start", "2025-01-01"] if i == 0 else []))
        sizes.append(target_size())
        if i == 0:  # the warehouse has a high-water mark: the option cannot apply, and says so
            assert re.search(r"WARNING: --backfill-start 2025-01-01 is ignored", output), output
    assert not (REPO_ROOT / "dbt_project" / "target").exists(), "dbt wrote into the package"
    (files_3, size_3), (files_4, size_4) = sizes[1], sizes[2]
    assert files_4 == files_3, "a run left new files in the dbt target path"
    assert size_4 <= size_3 * 1.02, (size_3, size_4)


# --- what the commands say about themselves ---------------------------------------------------------


def test_every_cli_option_has_help_and_shows_its_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        if name == "bench":
            continue  # its own parser, below
        help_text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"close-calls {name} {action.option_strings}: no help"
            if action.default not in (None, False):
                assert "default" in (
                    action.help or ""
                ) or f"(default: {action.default})" in " ".join(help_text.split()), (
                    f"close-calls {name} {action.option_strings}"
                )
    done = subprocess.run(
        [str(VENV_BIN / "close-calls"), "sandbox", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    words = " ".join(done.stdout.split())
    assert "180 days" in words and "whatever the date" in words  # what its size means


def test_a_backfill_start_in_the_future_is_refused_before_anything_runs(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    done = subprocess.run(
        [str(VENV_BIN / "close-calls"), "run", "--backfill-start", "2999-01-01"],
        cwd=REPO_ROOT,
        env=clean_env(CLOSE_CALLS_DUCKDB=str(warehouse), DAGSTER_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "in the future" in done.stdout + done.stderr
    assert not warehouse.exists()


def test_dbt_profile_default_memory_limit_is_the_products():
    profile = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    assert f"var('duckdb_memory_limit', '{config.DEFAULT_DBT_MEMORY_LIMIT}')" in profile


def test_dbt_docs_build_a_site_that_opens_from_disk(first_run, tmp_path):
    """`--no-serve` builds into the project folder a static_index.html that carries the manifest
    and catalog inline (the plain index.html fetches them, which file:// pages may not)."""
    _, settings, _ = first_run
    done = run_ok(
        [str(VENV_BIN / "close-calls"), "docs", "--no-serve", "--project-dir", str(tmp_path)],
        cwd="/",
        env=clean_env(**settings),
    )
    site = config.dbt_target_path(tmp_path) / "docs" / "static_index.html"
    assert str(site) in done.stdout
    html = site.read_text()
    assert 'manifest:{"metadata": {"dbt_schema_version"' in html  # the manifest, inline
    assert "model.close_calls.fct_call_conversations" in html
    rendered = subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--virtual-time-budget=15000", "--dump-dom", site.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    page = re.sub(r"<script.*?</script>", "", rendered.stdout, flags=re.DOTALL)  # drawn, not data
    assert 'data-nav-unique-id="model.close_calls.fct_call_conversations"' in page, page[-2000:]
