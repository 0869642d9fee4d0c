"""The marts built incrementally equal a full refresh, row for row, after every round of changes.

One warehouse is synced from the sandbox over loopback and built as the pipeline builds it (the
plan of core/build_plan.py: incremental, full or nothing); after each sync a copy of it is built
with `--full-refresh`, and every analytics table of the two is compared. The rounds cover new,
updated and deleted calls, calls moving to another day, user and outcome, transcripts arriving
later, an outcome renamed, and a round with no change at all.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from helpers.dbt_fixture import DBT_PROJECT_DIR, build_as_planned, run_dbt
from helpers.sandbox_warehouse import sync

from close_calls_pipeline.core import build_plan, changed_row_tests, warehouse

pytestmark = pytest.mark.slow

# A zone far from UTC, so that a call moving by hours can change its call_date.
DBT_VARS = {"reporting_timezone": "America/Los_Angeles"}


def build(db_path: Path, work_dir: Path, full_refresh: bool = False) -> build_plan.BuildPlan:
    """Plan as the pipeline does, then build as it does (when the plan says so)."""
    con = warehouse.connect(str(db_path))
    try:
        fingerprint = build_plan.fingerprint(con, DBT_PROJECT_DIR, DBT_VARS)
        plan = build_plan.plan(con, fingerprint, full_refresh)
        build_plan.request(con, plan)
    finally:
        con.close()
    if plan.mode != build_plan.UNCHANGED:
        results = build_as_planned(
            plan, json.dumps(DBT_VARS), db_path, work_dir, lambda: warehouse.connect(str(db_path))
        )
        # an incremental build's tests run after dbt: every data test of the project, none lost
        assert (len(results) >= 90) == plan.tests_after_dbt, len(results)
    return plan


def mart_differences(built: Path, refreshed: Path) -> dict[str, int]:
    """Rows of each analytics table and view found in one warehouse and not the other (counted with
    multiplicity); DOUBLE columns match within 1e-9 relative (a sum's last bits depend on the
    order it reads its rows in)."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{built}' AS built (READ_ONLY)")
        con.execute(f"ATTACH '{refreshed}' AS refreshed (READ_ONLY)")
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'analytics' "
                "AND database_name IN ('built', 'refreshed') UNION SELECT view_name "
                "FROM duckdb_views() WHERE schema_name = 'analytics' "
                "AND database_name IN ('built', 'refreshed')"
            ).fetchall()
        }
        out = {}
        for table in sorted(tables):
            columns = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                "'refreshed' AND schema_name = 'analytics' AND table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
            exact = [f'"{c}"' for c, t in columns if t not in ("DOUBLE", "FLOAT")]
            approximate = [f'"{c}"' for c, t in columns if t in ("DOUBLE", "FLOAT")]
            numbered = (
                f"SELECT *, row_number() OVER (PARTITION BY {', '.join(exact)} "
                f"ORDER BY {', '.join(approximate) or 1}) AS _n FROM {{db}}.analytics.{table}"
            )
            same_key = " AND ".join(
                [f"a.{c} IS NOT DISTINCT FROM b.{c}" for c in exact] + ["a._n = b._n"]
            )
            differ = " OR ".join(
                ["a._n IS NULL", "b._n IS NULL"]
                + [
                    f"(a.{c} IS NULL) <> (b.{c} IS NULL) "
                    f"OR abs(a.{c} - b.{c}) > 1e-9 * greatest(1, abs(b.{c}))"
                    for c in approximate
                ]
            )
            (count,) = con.execute(
                f"SELECT count(*) FROM ({numbered.format(db='built')}) AS a "
                f"FULL JOIN ({numbered.format(db='refreshed')}) AS b ON {same_key} "
                f"WHERE {differ}"
            ).fetchone()
            out[table] = count
        return out
    finally:
        con.close()


def move_some_calls(store, rng: random.Random, n: int) -> None:
    """Calls that move to another day (by hours to days), another user and another outcome."""
    ids = store.call_ids()
    users = [u["id"] for u in store.users]
    outcomes = [o["id"] for o in store.outcomes]
    for call_id in rng.sample(ids, n):
        call = store.truth()[call_id]
        change = rng.randrange(3)
        if change == 0 and call.get("activity_at"):
            moved = datetime.fromisoformat(call["activity_at"]) + timedelta(
                hours=rng.choice([-50, -9, 7, 30])
            )
            store.update_call(call_id, activity_at=moved.isoformat().replace("+00:00", "Z"))
        elif change == 1:
            user = rng.choice(users)
            store.update_call(call_id, user_id=user)
        else:
            store.update_call(call_id, outcome_id=rng.choice(outcomes))


def test_incremental_builds_equal_a_full_refresh_after_every_round(make_sandbox, tmp_path):
    server = make_sandbox(calls=300, seed=7)
    store = server.store
    built, refreshed = tmp_path / "built.duckdb", tmp_path / "refreshed.duckdb"
    rng = random.Random(18)

    sync(server, built)
    old_models = ("int_changed_calls", "int_changed_call_dates")  # before build_state had them
    with duckdb.connect(str(built)) as con:  # what earlier releases left
        con.execute("CREATE SCHEMA intermediate")
        for name in old_models:
            con.execute(f"CREATE TABLE intermediate.{name} (x INT)")
    assert build(built, tmp_path / "built_dbt").mode == build_plan.FULL
    with duckdb.connect(str(built)) as con:  # a full refresh drops them
        assert not con.execute(
            "FROM duckdb_tables() WHERE list_contains(?, table_name)", [list(old_models)]
        ).fetchall()

    def round_of_changes() -> None:
        store.mutate_random(rng, new=8, updated=20, deleted=4, old_share=0.5)
        move_some_calls(store, rng, 10)
        store.advance(rng.uniform(60, 3000))
        sync(server, built)

    def assert_equals_a_full_refresh(round_number: int) -> None:
        shutil.copyfile(built, refreshed)  # the same data, as the sync left it, marts aside
        plan = build(built, tmp_path / "built_dbt")
        assert plan.mode == build_plan.INCREMENTAL, (round_number, plan)
        assert build(refreshed, tmp_path / "refreshed_dbt", full_refresh=True).mode == "full"
        differences = mart_differences(built, refreshed)
        assert len(differences) >= 10, differences
        assert not any(differences.values()), (round_number, differences)

    for round_number in range(2):
        round_of_changes()
        assert_equals_a_full_refresh(round_number)
    assert_the_tests_ran_after_dbt_on_the_changed_rows(tmp_path / "built_dbt")

    # an outcome renamed: rows of calls that did not change are renamed, so the build is full
    store.outcomes[0]["name"] = f"{store.outcomes[0]['name']} (renamed)"
    round_of_changes()
    plan = build(built, tmp_path / "built_dbt")
    assert plan.mode == build_plan.FULL and "outcomes or users" in plan.reason, plan

    # nothing changed: no dbt build at all, and the summary can say since when
    store.advance(600)
    sync(server, built)
    plan = build(built, tmp_path / "built_dbt")
    assert plan.mode == build_plan.UNCHANGED and plan.reason.startswith("no change since"), plan

    round_of_changes()
    assert_equals_a_full_refresh(3)

    # a data test that fails after an incremental build: recorded, and the next build is full
    con = warehouse.connect(str(built))
    try:
        test = changed_row_tests.CompiledTest(
            "test.close_calls.failing", "failing", "select call_id from analytics.fct_calls",
            "error", "count(*)", "!= 0", "!= 0", None,
        )  # fmt: skip
        assert changed_row_tests.failed([changed_row_tests.run_test(con, test)])
        changed_row_tests.record_failed_build(con)
    finally:
        con.close()
    round_of_changes()
    plan = build(built, tmp_path / "built_dbt")
    assert plan.mode == build_plan.FULL and "did not complete" in plan.reason, plan


def assert_the_tests_ran_after_dbt_on_the_changed_rows(work_dir: Path) -> None:
    """The last incremental build: dbt ran tables only (no view, no test); every data test of
    the project ran after it, those of the one-row-per-call models on the changed calls, those
    of the day-grained marts on the changed days."""
    manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    nodes = manifest["nodes"]
    statuses = json.loads((work_dir / "target" / "run_results.json").read_text())["results"]
    ran = [r["unique_id"] for r in statuses]
    assert {uid.split(".")[0] for uid in ran} == {"model", "operation"}  # operations: the hooks
    models = [uid for uid in ran if uid.startswith("model.")]
    assert models and all(nodes[uid]["config"]["materialized"] != "view" for uid in models)
    compiled = json.loads((work_dir / changed_row_tests.CACHE_FILE).read_text())["tests"]
    tests = [changed_row_tests.CompiledTest(**test) for test in compiled]
    full_builds_only = {
        u for u, n in nodes.items() if n["config"].get("meta", {}).get("full_builds_only")
    }
    assert len(full_builds_only) == 1, full_builds_only  # the one whose filter reaches nothing
    every_test = {u for u, n in nodes.items() if n["resource_type"] == "test"}
    assert {t.unique_id for t in tests} == every_test - full_builds_only

    def sql_of_tests_on(model: str) -> list[str]:
        return [t.sql for t in tests
                if (nodes[t.unique_id].get("attached_node") or "").endswith(f".{model}")]  # fmt: skip

    assert sql_of_tests_on("fct_calls") and sql_of_tests_on("call_metrics_by_user_daily")
    assert all("build_state.changed_calls" in sql for sql in sql_of_tests_on("fct_calls"))
    assert all(
        "build_state.changed_days" in sql for sql in sql_of_tests_on("call_metrics_by_user_daily")
    )


def test_a_build_that_dies_midway_makes_the_next_one_full(make_sandbox, tmp_path):
    """A dbt killed after rewriting fct_calls but before the daily marts leaves its "started"
    row: the next plan is a full refresh, not an incremental build that would have lost the days
    the changed calls left."""
    server = make_sandbox(calls=60, seed=5)
    db = tmp_path / "warehouse.duckdb"
    sync(server, db)
    assert build(db, tmp_path / "dbt").mode == build_plan.FULL
    server.store.mutate_random(random.Random(2), new=2, updated=4, deleted=1)
    server.store.advance(600)
    sync(server, db)
    # the incremental build, stopped once fct_calls is rebuilt (a selection ends the same way)
    con = warehouse.connect(str(db))
    try:
        plan = build_plan.plan(con, build_plan.fingerprint(con, DBT_PROJECT_DIR, DBT_VARS))
        build_plan.request(con, plan)
    finally:
        con.close()
    assert plan.mode == build_plan.INCREMENTAL
    args = ["build", "--vars", json.dumps(DBT_VARS), "--select", "+fct_calls"]
    assert run_dbt(args, db, tmp_path / "dbt").success
    con = warehouse.connect(str(db))
    try:
        plan = build_plan.plan(con, build_plan.fingerprint(con, DBT_PROJECT_DIR, DBT_VARS))
        complete = con.execute(
            "SELECT complete FROM build_state.builds ORDER BY recorded_at DESC LIMIT 2"
        ).fetchall()
    finally:
        con.close()
    assert complete == [(False,), (False,)]  # started, then ended with models left unbuilt
    assert plan.mode == build_plan.FULL and "did not complete" in plan.reason, plan

    # killed: its on-run-end hook never ran, only the row recorded when it started is there
    con = warehouse.connect(str(db))
    try:
        con.execute(
            "DELETE FROM build_state.builds "
            "WHERE recorded_at = (SELECT max(recorded_at) FROM build_state.builds)"
        )
        plan = build_plan.plan(con, build_plan.fingerprint(con, DBT_PROJECT_DIR, DBT_VARS))
    finally:
        con.close()
    assert plan.mode == build_plan.FULL and "did not complete" in plan.reason, plan
