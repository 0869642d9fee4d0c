"""The data tests of an incremental build, run after dbt from their compiled SQL
(core/changed_row_tests.py): judged as dbt judges them, in their changed-rows form, and a
failure makes the next build a full refresh."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import duckdb
import pytest
from helpers.dbt_fixture import DBT_PROJECT_DIR, build_as_planned, run_dbt
from helpers.sandbox_warehouse import sync

from close_calls_pipeline.core import build_plan, changed_row_tests, warehouse

DBT_VARS = json.dumps({"reporting_timezone": "UTC"})


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


def test_an_incremental_build_runs_every_test_on_the_changed_rows_and_a_failure_makes_the_next_full(
    make_sandbox, tmp_path
):
    server = make_sandbox(calls=80, seed=11)
    db, work_dir = tmp_path / "warehouse.duckdb", tmp_path / "dbt"

    def planned() -> build_plan.BuildPlan:
        con = warehouse.connect(str(db))
        try:
            fingerprint = build_plan.fingerprint(con, DBT_PROJECT_DIR, json.loads(DBT_VARS))
            plan = build_plan.plan(con, fingerprint)
            build_plan.request(con, plan)
            return plan
        finally:
            con.close()

    sync(server, db)
    full = planned()
    assert build_as_planned(full, DBT_VARS, db, work_dir, lambda: warehouse.connect(str(db))) == []
    server.store.mutate_random(random.Random(4), new=2, updated=3, deleted=1)
    server.store.advance(600)
    sync(server, db)
    plan = planned()
    assert plan.mode == build_plan.INCREMENTAL and plan.tests_after_dbt
    results = build_as_planned(plan, DBT_VARS, db, work_dir, lambda: warehouse.connect(str(db)))

    # every data test of the project ran, none of them in dbt
    manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    data_tests = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] == "test"}
    assert {r.test.unique_id for r in results} == data_tests
    statuses = json.loads((work_dir / "target" / "run_results.json").read_text())["results"]
    models = [r["unique_id"] for r in statuses if r["unique_id"].startswith("model.")]
    assert {r["unique_id"].split(".")[0] for r in statuses} == {"model", "operation"}  # hooks
    assert models and all(
        manifest["nodes"][uid]["config"]["materialized"] != "view" for uid in models
    ), "dbt re-created a view"

    # the tests of the one-row-per-call models read the changed calls, the day-grained marts'
    # the changed days
    def sql_of_tests_on(model: str) -> list[str]:
        attached = {uid for uid, n in manifest["nodes"].items()
                    if (n.get("attached_node") or "").endswith(f".{model}")}  # fmt: skip
        return [r.test.sql for r in results if r.test.unique_id in attached]

    assert all("build_state.current" in sql for sql in sql_of_tests_on("fct_calls"))
    assert all(
        "int_changed_call_dates" in sql for sql in sql_of_tests_on("call_metrics_by_user_daily")
    )
    assert sql_of_tests_on("fct_calls") and sql_of_tests_on("call_metrics_by_user_daily")

    # a test that fails after the build: recorded, and the next build is a full refresh
    con = warehouse.connect(str(db))
    try:
        failing = changed_row_tests.run_test(con, a_test("select call_id from analytics.fct_calls"))
        assert changed_row_tests.failed([failing]) == [failing]
        changed_row_tests.record_failed_build(con)
    finally:
        con.close()
    server.store.advance(60)
    after = planned()
    assert after.mode == build_plan.FULL and "did not complete" in after.reason, after
    assert run_dbt([*after.dbt_command, "--vars", DBT_VARS], db, work_dir).success
