"""The dbt project's data tests on an incremental build, run in one connection instead of as dbt
nodes.

dbt pays tens of milliseconds a node whatever its rows: on an hourly build that changed 1% of
the calls, its ~100 tests cost as much as on all of them, more than the models themselves. So the
pipeline's incremental build runs only the models that hold rows (`dbt run`), and then every
data test here, from SQL dbt compiled once for the project's current fingerprint (`dbt compile`
renders each test in its changed-rows form: macros/incremental_build.sql). A test's verdict is
dbt's own: `fail_calc`, `warn_if`, `error_if` and `severity` from its config.

The tests of one model read the same changed rows (`get_where_subquery` renders them as
`(select * from <model> where (...)) dbt_subquery`): one query per such model reads them once and
judges all its tests. In a lake each read of a model costs its catalog lookups and a scan of its
Parquet files for the changed ids: 104 tests that read 12 models' rows 80 times took 1.4 s at
500,000 calls, 36 queries take 0.7 s (0.5 and 0.25 s in a file; docs/incremental.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.sql_text import identifier, literal

# `dbt compile` of the data tests only; no query of the warehouse is needed to render them.
COMPILE_ARGS = [
    "compile",
    "--select", "resource_type:test",  # data tests (unit tests are `unit_test`)
    "--no-populate-cache",
    "--no-introspect",
    "--quiet",
]  # fmt: skip

# Where an orchestrator keeps the compiled tests: in the folder of its dbt runs' artefacts.
CACHE_FILE = "changed_row_tests.json"

# Where `dbt compile` writes, below that folder: a folder of its own, so that no dbt run in the
# same project (another run, another warehouse) replaces the manifest it is read from.
COMPILE_FOLDER = "compile"

PASS, WARN, FAIL, ERROR = "pass", "warn", "fail", "error"  # dbt's test statuses

# Queries run at once, each in a cursor of its own: most are small queries that keep one CPU
# busy, and two at a time took about 30% less wall time than one after the other on the 2 CPUs of
# the benchmark machine (docs/incremental.md); more took no less.
TEST_THREADS = 2

# How a test reads its model's rows when they are filtered (macros/incremental_build.sql,
# get_where_subquery); `rows` is the subquery without its alias.
_ROWS_READ = re.compile(r"\((?P<rows>select \* from \S+ where .*?)\) dbt_subquery", re.S)
_SHARED_ROWS = "dbt_shared_rows"  # the common table expression a query's tests read instead


@dataclass(frozen=True)
class CompiledTest:
    unique_id: str
    name: str
    sql: str  # the test's compiled query: its failing rows
    severity: str  # "error" | "warn"
    fail_calc: str
    warn_if: str
    error_if: str
    limit: int | None


@dataclass(frozen=True)
class TestResult:
    test: CompiledTest
    status: str  # PASS | WARN | FAIL | ERROR
    failures: int | None  # dbt's failure count (fail_calc); None when the query failed
    message: str | None
    seconds: float  # of the query that judged it
    judged_with: int = 1  # tests that query judged (those reading the same rows)


def tests_from_manifest(manifest: Mapping[str, Any]) -> list[CompiledTest]:
    """The data tests of a `dbt compile` manifest, compiled, in a stable order; not those whose
    `meta` says `full_builds_only` (with the reason: a test that reads every row whatever
    changed, and whose rows other tests cover on the changed rows). A test without its compiled
    SQL is an error, not a test left out: kept for the fingerprint, the list would leave it out
    of every incremental build until the project changed."""
    tests, uncompiled = [], []
    for unique_id, node in sorted(manifest.get("nodes", {}).items()):
        if node.get("resource_type") != "test":
            continue
        if not node.get("compiled_code"):
            uncompiled.append(unique_id)
            continue
        config = node.get("config") or {}
        if (config.get("meta") or {}).get("full_builds_only"):
            continue
        tests.append(
            CompiledTest(
                unique_id=unique_id,
                name=node["name"],
                sql=node["compiled_code"],
                severity=str(config.get("severity") or "error").lower(),
                fail_calc=config.get("fail_calc") or "count(*)",
                warn_if=config.get("warn_if") or "!= 0",
                error_if=config.get("error_if") or "!= 0",
                limit=config.get("limit"),
            )
        )
    if uncompiled:
        raise ValueError(
            f"the dbt compile's manifest holds {len(uncompiled)} data tests without their "
            f"compiled SQL (first: {uncompiled[0]}): not a manifest of `dbt compile`"
        )
    return tests


def store(path: Path, fingerprint: str, tests: Iterable[CompiledTest]) -> None:
    """Keep the compiled tests for the fingerprint they were compiled under."""
    payload = {"fingerprint": fingerprint, "tests": [asdict(test) for test in tests]}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload))
    temporary.replace(path)


def stored(path: Path, fingerprint: str) -> list[CompiledTest] | None:
    """The tests compiled for this fingerprint, or None (never compiled, or for other code)."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if payload.get("fingerprint") != fingerprint:
        return None
    return [CompiledTest(**test) for test in payload["tests"]]


def compiled_tests(
    path: Path, fingerprint: str, compile_manifest: Callable[[], Mapping[str, Any]]
) -> list[CompiledTest]:
    """The tests compiled for this fingerprint: kept in `path` from an earlier compile, else
    compiled now (`compile_manifest`: a `dbt compile` with COMPILE_ARGS, returning its manifest)
    and kept for the next builds."""
    tests = stored(path, fingerprint)
    if tests is None:
        tests = tests_from_manifest(compile_manifest())
        store(path, fingerprint, tests)
    return tests


def _verdict_sql(test: CompiledTest) -> str:
    """dbt's own wrapper (its `get_test_sql` macro): the failure count and both thresholds."""
    limit = f"\nlimit {int(test.limit)}" if test.limit is not None else ""
    return (
        f"select {test.fail_calc} as failures,\n"
        f"    {test.fail_calc} {test.warn_if} as should_warn,\n"
        f"    {test.fail_calc} {test.error_if} as should_error\n"
        f"from (\n{test.sql}{limit}\n) dbt_internal_test"
    )


def _judged(
    test: CompiledTest, verdict: tuple[Any, bool, bool], seconds: float, judged_with: int = 1
) -> TestResult:
    failures, should_warn, should_error = verdict
    if test.severity == "error" and should_error:
        status = FAIL
    elif should_warn:
        status = WARN
    else:
        status = PASS
    message = None if status == PASS else f"Got {failures} result(s), configured to {status}"
    return TestResult(test, status, failures, message, seconds, judged_with)


def run_test(con: duckdb.DuckDBPyConnection, test: CompiledTest) -> TestResult:
    """One test, judged as dbt judges it; a query that fails is an ERROR, not an exception."""
    started = time.perf_counter()
    try:
        verdict = con.execute(_verdict_sql(test)).fetchone()
    except duckdb.Error as error:
        seconds = time.perf_counter() - started
        return TestResult(test, ERROR, None, str(error).splitlines()[0], seconds)
    return _judged(test, verdict, time.perf_counter() - started)


def rows_read(test: CompiledTest) -> str | None:
    """The filtered rows `test` reads (its model's changed rows), when it reads one such set."""
    found = {match["rows"] for match in _ROWS_READ.finditer(test.sql)}
    return found.pop() if len(found) == 1 else None


def by_rows_read(tests: Sequence[CompiledTest]) -> list[list[int]]:
    """The tests' positions, those reading the same filtered rows together (a group of one for
    a test that reads none, or more than one set); largest groups first, to start them first."""
    groups: dict[str | int, list[int]] = {}
    for position, test in enumerate(tests):
        groups.setdefault(rows_read(test) or position, []).append(position)
    return sorted(groups.values(), key=len, reverse=True)


def _together_sql(tests: Sequence[CompiledTest], rows: str) -> str:
    """One query for tests reading the same rows: the rows read once (a materialized common
    table expression), then each test's verdict, numbered."""
    verdicts = "\nunion all\n".join(
        f"select {number} as test_number, * from (\n"
        + _verdict_sql(replace(test, sql=test.sql.replace(f"({rows})", _SHARED_ROWS)))
        + "\n)"
        for number, test in enumerate(tests)
    )
    return f"with {_SHARED_ROWS} as materialized (\n{rows}\n)\n{verdicts}"


def run_together(con: duckdb.DuckDBPyConnection, tests: Sequence[CompiledTest]) -> list[TestResult]:
    """Tests that read the same rows (by_rows_read), judged in one query; raises duckdb.Error
    when it fails (then run_test each, to know which test failed)."""
    started = time.perf_counter()
    rows = con.execute(_together_sql(tests, rows_read(tests[0]))).fetchall()
    seconds = time.perf_counter() - started
    verdicts = {number: verdict for number, *verdict in rows}
    return [
        _judged(test, verdicts[number], seconds, len(tests)) for number, test in enumerate(tests)
    ]


@dataclass(frozen=True)
class TestRun:
    results: list[TestResult]  # in the order of the tests
    queries: int  # how many queries judged them
    seconds: float  # wall time of the run


def run_tests(
    con: duckdb.DuckDBPyConnection, tests: Iterable[CompiledTest], threads: int = TEST_THREADS
) -> TestRun:
    """Every test, tests reading the same rows in one query (by_rows_read), `threads` queries at
    a time, each in a cursor of `con` (same database and time zone, one read transaction a
    cursor); a failure is recorded (`record_failed_build`)."""
    started = time.perf_counter()
    tests = list(tests)
    database, time_zone = con.execute(
        "SELECT current_database(), current_setting('TimeZone')"
    ).fetchone()
    cursors: list[duckdb.DuckDBPyConnection] = []
    local = threading.local()

    def restart(cursor: duckdb.DuckDBPyConnection) -> None:
        """A failed query aborts the transaction: the next needs a new one."""
        cursor.execute("ROLLBACK")
        cursor.execute("BEGIN TRANSACTION")

    def run(positions: list[int]) -> list[TestResult]:
        if not hasattr(local, "cursor"):
            local.cursor = con.cursor()
            cursors.append(local.cursor)
            local.cursor.execute(f"USE {identifier(database)}")
            local.cursor.execute(f"SET TimeZone = {literal(time_zone)}")
            # One read transaction a cursor: a lake reads its catalog once, not once a query.
            local.cursor.execute("BEGIN TRANSACTION")
        group = [tests[position] for position in positions]
        if len(group) > 1:
            try:
                return run_together(local.cursor, group)
            except duckdb.Error:
                restart(local.cursor)
        results = []
        for test in group:
            results.append(result := run_test(local.cursor, test))
            if result.status == ERROR:
                restart(local.cursor)
        return results

    groups = by_rows_read(tests)
    try:
        with ThreadPoolExecutor(threads) as pool:
            judged = list(pool.map(run, groups))
    finally:
        for cursor in cursors:
            cursor.close()  # rolls back its read transaction
    by_position = {
        position: result
        for positions, results in zip(groups, judged, strict=True)
        for position, result in zip(positions, results, strict=True)
    }
    results = [by_position[position] for position in range(len(tests))]
    if failed(results):
        record_failed_build(con)
    return TestRun(results, len(groups), time.perf_counter() - started)


def summary(run: TestRun) -> str:
    """One line: how many tests ran on the changed rows, how long, and their verdicts."""
    counts = {status: 0 for status in (PASS, WARN, FAIL, ERROR)}
    for result in run.results:
        counts[result.status] += 1
    verdicts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return (
        f"{len(run.results)} data tests on the changed rows in {run.queries} queries, "
        f"{run.seconds:.1f} s: {verdicts or 'none'}"
    )


def failed(results: Iterable[TestResult]) -> list[TestResult]:
    """The results that fail the build (an error-severity failure, or a query that failed)."""
    return [result for result in results if result.status in (FAIL, ERROR)]


def record_failed_build(con: duckdb.DuckDBPyConnection) -> None:
    """A build whose tests failed is not complete: the next build is a full refresh, which tests
    every row again (as dbt build skips the models below a failed test)."""
    con.execute(warehouse.read_sql("record_failed_build.sql"))
