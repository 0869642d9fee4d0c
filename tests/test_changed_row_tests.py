"""The data tests of an incremental build, run after dbt from their compiled SQL
(core/changed_row_tests.py), are judged as dbt judges them. (That they run on the changed rows,
and that a failure makes the next build full: tests/test_incremental_marts.py; through Dagster:
tests/test_dagster.py; through Airflow: tests/test_airflow.py.)"""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest

from close_calls_pipeline.core import changed_row_tests


def a_test(sql: str, **config) -> changed_row_tests.CompiledTest:
    defaults = {"severity": "error", "fail_calc": "count(*)", "warn_if": "!= 0",
                "error_if": "!= 0", "limit": None}  # fmt: skip
    return changed_row_tests.CompiledTest("test.p.t", "t", sql, **{**defaults, **config})


@pytest.mark.parametrize(
    ("sql", "config", "status", "failures"),
    [
        ("select x from t where x > 10", {}, "pass", 0),
        ("select x from t where x > 2", {}, "fail", 2),
        ("select x from t where x > 2", {"severity": "warn"}, "warn", 2),
        # dbt's thresholds: 2 failures warn (!= 0) but do not reach the error threshold (> 5)
        ("select x from t where x > 2", {"error_if": "> 5"}, "warn", 2),
        ("select x from t where x > 2", {"warn_if": "> 5", "error_if": "> 5"}, "pass", 2),
        ("select x from t", {"fail_calc": "sum(x)", "error_if": "> 100"}, "warn", 10),
        ("select x from t where x > 0", {"limit": 1}, "fail", 1),
    ],
)
def test_a_test_is_judged_as_dbt_judges_it(sql, config, status, failures):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
    result = changed_row_tests.run_test(con, a_test(sql, **config))
    assert (result.status, result.failures) == (status, failures)
    assert changed_row_tests.failed([result]) == ([result] if status == "fail" else [])


def test_a_query_that_fails_is_an_error_not_an_exception():
    result = changed_row_tests.run_test(duckdb.connect(), a_test("select * from missing_table"))
    assert result.status == "error" and result.failures is None
    assert "missing_table" in result.message and "\n" not in result.message
    assert changed_row_tests.failed([result]) == [result]


def test_compiled_tests_are_kept_for_their_fingerprint_only(tmp_path):
    path = tmp_path / changed_row_tests.CACHE_FILE
    assert changed_row_tests.stored(path, "a") is None
    tests = [a_test("select 1"), replace(a_test("select 2"), unique_id="test.p.u", name="u")]
    changed_row_tests.store(path, "a", tests)
    assert changed_row_tests.stored(path, "a") == tests
    assert changed_row_tests.stored(path, "b") is None  # other code, vars or reference tables


def test_tests_run_at_once_in_the_callers_database_and_time_zone_in_order(tmp_path):
    """The cursors the tests run in read the database `con` uses (an attached file, as the
    pipeline's connections are) and its session time zone, and the results keep the tests'
    order; a failure is recorded as a failed build."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'w.duckdb'}' AS w")
    con.execute("USE w")
    con.execute("SET TimeZone = 'America/New_York'")
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
    create_build_state(con)
    zone = "select 1 where current_setting('TimeZone') <> 'America/New_York'"
    tests = [a_test(f"select x from t where x > {n}") for n in range(6)] + [a_test(zone)]
    run = changed_row_tests.run_tests(con, tests, threads=3)
    assert [result.failures for result in run.results] == [4, 3, 2, 1, 0, 0, 0]
    assert [result.test for result in run.results] == tests
    assert run.seconds > 0
    assert changed_row_tests.summary(run).startswith("7 data tests on the changed rows in ")
    assert changed_row_tests.summary(run).endswith(": 3 pass, 4 fail")
    recorded = con.execute("SELECT after_seq, through_seq, complete FROM build_state.builds")
    assert recorded.fetchall() == [(1, 2, False)]  # the next build is a full refresh
    # a query that fails does not fail the tests run after it in the same cursor
    broken = [
        a_test("select x from t where cast('x' || x as int) > 0"),
        a_test("select * from nowhere"),
    ]
    after = changed_row_tests.run_tests(con, [*broken, *tests[:2]], threads=1).results
    assert [result.status for result in after] == ["error", "error", "fail", "fail"]


def create_build_state(con: duckdb.DuckDBPyConnection) -> None:
    """What a failed run records into (record_failed_build.sql)."""
    con.execute("""
        CREATE SCHEMA build_state;
        CREATE TABLE build_state.builds (recorded_at TIMESTAMPTZ, after_seq BIGINT,
            through_seq BIGINT, complete BOOLEAN, full_refresh BOOLEAN, fingerprint VARCHAR);
        CREATE TABLE build_state.current AS SELECT 1 AS after_seq, 2 AS through_seq;
        CREATE TABLE build_state.request AS SELECT 'f' AS fingerprint;
    """)


# How the project's tests read a model's changed rows (macros/incremental_build.sql).
CHANGED_T = "(select * from t where (x in (select x from changed))) dbt_subquery"


def test_tests_of_the_same_rows_are_judged_in_one_query_as_each_alone():
    """Tests reading the same changed rows share one query (the rows read once); each verdict is
    the one the test gets alone, and a test whose query fails is an error of its own while the
    others of its rows are still judged."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(10)")
    con.execute("CREATE TABLE changed AS SELECT range AS x FROM range(5, 9)")
    create_build_state(con)
    other_rows = CHANGED_T.replace("from changed", "from t")
    tests = [
        a_test(f"select x from {CHANGED_T} where x > 6"),  # 7, 8
        a_test(f"with v as (select x from {CHANGED_T}) select * from v where x < 0"),
        a_test(f"select x from {CHANGED_T} where x % 2 = 0", severity="warn"),  # 6, 8
        a_test(f"select x from {other_rows} where x > 8"),  # 9: other rows, its own query
        a_test("select x from t where x > 7"),  # no filtered rows: its own query
        a_test(f"select sum(x) from {CHANGED_T}", fail_calc='max("sum(x)")', error_if="> 25"),
    ]
    assert [len(group) for group in changed_row_tests.by_rows_read(tests)] == [4, 1, 1]
    alone = [changed_row_tests.run_test(con, test) for test in tests]
    run = changed_row_tests.run_tests(con, tests, threads=2)
    assert run.queries == 3
    assert [(r.status, r.failures) for r in run.results] == [(r.status, r.failures) for r in alone]
    assert [(r.status, r.failures) for r in run.results] == [
        ("fail", 2), ("pass", 0), ("warn", 2), ("fail", 1), ("fail", 2), ("fail", 26)
    ]  # fmt: skip
    assert [r.judged_with for r in run.results] == [4, 4, 4, 1, 1, 4]
    broken = a_test(f"select x from {CHANGED_T} where cast('x' || x as int) > 0")
    results = changed_row_tests.run_tests(con, [*tests[:3], broken], threads=1).results
    assert [r.status for r in results] == ["fail", "pass", "warn", "error"]
    assert [r.judged_with for r in results] == [1, 1, 1, 1]  # judged alone after the error
    assert "Conversion Error" in results[3].message


def test_a_manifest_whose_tests_are_not_compiled_is_refused():
    """A manifest whose tests have no compiled SQL (one a `dbt run` wrote over the compile's)
    would be kept as "no test" for the fingerprint: it is an error instead."""
    compiled = {"resource_type": "test", "name": "t", "compiled_code": "select 1", "config": {}}
    manifest = {"nodes": {"test.p.t": compiled, "model.p.m": {"resource_type": "model"}}}
    assert [t.unique_id for t in changed_row_tests.tests_from_manifest(manifest)] == ["test.p.t"]
    manifest["nodes"]["test.p.u"] = {"resource_type": "test", "name": "u", "config": {}}
    with pytest.raises(ValueError, match="1 data tests without their compiled SQL"):
        changed_row_tests.tests_from_manifest(manifest)
