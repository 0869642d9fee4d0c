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
