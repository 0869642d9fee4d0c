"""Enumeration values Close starts sending keep the marts building, and are listed.

Calls with a disposition, status and call_method the known lists (var known_enum_values in
dbt_project.yml) do not have go into the sandbox; after a sync, a real `dbt build` must succeed
with nothing skipped or errored, the marts must count those calls, and
analytics.unknown_enum_values must list each unknown value with its number of calls.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers.dbt_fixture import model_count
from helpers.duck import query
from helpers.sandbox_warehouse import (
    allowed_warnings,
    called_at,
    dbt_build,
    expected_unknown_enum_values,
    is_allowed,
    sync,
    warned_test_names,
)

from close_calls_pipeline.sandbox import SandboxServer, SandboxStore

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

# id suffix -> fields changed from a generated call
UNKNOWN_CALLS = {
    "transferred_1": {"disposition": "transferred"},
    "transferred_2": {"disposition": "transferred"},
    "queued": {"status": "queued"},
    "ai_dialer_1": {"call_method": "ai-dialer"},
    "ai_dialer_2": {"call_method": "ai-dialer", "disposition": "transferred", "status": "queued"},
    "ai_dialer_3": {"call_method": "ai-dialer"},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("unknown_enum_values")
    db_path = work_dir / "close_calls.duckdb"
    store = SandboxStore(calls=300, seed=31)
    template = next(c for c in store.truth().values() if c["disposition"] == "answered")
    for index, (suffix, fields) in enumerate(UNKNOWN_CALLS.items()):
        store.put_raw_call(
            dict(template, id=f"acti_unknown_{suffix}", **fields),
            at=store.now - timedelta(days=1 + index),
        )
    server = SandboxServer(store, api_key="test-key").start()
    try:
        sync(server, db_path)
        result = dbt_build(db_path, work_dir)
    finally:
        server.stop()
    return db_path, result, store


def test_dbt_build_succeeds_and_skips_nothing(built):
    _, result, store = built
    assert result.success, result.log
    statuses = result.statuses
    assert sum(1 for u in statuses if u.startswith("model.")) == model_count()
    assert all(status in ("success", "pass", "warn") for status in statuses.values()), {
        u: s for u, s in statuses.items() if s not in ("success", "pass", "warn")
    }
    warned = warned_test_names(result)
    # the unknown values warn, in staging and on fct_calls ...
    for column in ("disposition", "status", "call_method"):
        assert f"accepted_values_stg_close__calls_{column}" in warned, column
        assert f"accepted_values_fct_calls_{column}" in warned, column
    # ... and nothing the data does not explain warns
    allowed = allowed_warnings(store)
    assert not {name for name in warned if not is_allowed(name, allowed)}


def test_the_marts_count_the_calls_with_unknown_values(built):
    db_path, _, store = built
    truth = store.truth()
    ids = [f"acti_unknown_{suffix}" for suffix in UNKNOWN_CALLS]
    rows = query(
        db_path,
        "select call_id, disposition, status, call_method from analytics.fct_calls"
        " where call_id in (select unnest($1::varchar[]))",
        [ids],
    )
    assert {r[0]: r[1:] for r in rows} == {
        call_id: (
            truth[call_id]["disposition"],
            truth[call_id]["status"],
            truth[call_id]["call_method"],
        )
        for call_id in ids
    }
    by_disposition = dict(
        query(db_path, "select disposition, calls from analytics.call_metrics_by_disposition")
    )
    assert by_disposition["transferred"] == 3
    assert sum(by_disposition.values()) == len(truth)
    for mart in (
        "call_metrics_daily",
        "call_metrics_by_user_daily",
        "call_metrics_by_outcome",
        "call_metrics_by_user_weekly",
        "call_metrics_by_hour",
    ):
        assert query(db_path, f"select sum(calls) from analytics.{mart}") == [(len(truth),)], mart
    # a call with an unknown value counts on its day
    call = truth["acti_unknown_queued"]
    at = called_at(call)
    (calls_that_day,) = query(
        db_path, "select calls from analytics.call_metrics_daily where call_date = ?", [at.date()]
    )[0]
    assert calls_that_day == sum(1 for c in truth.values() if called_at(c).date() == at.date())


def test_unknown_enum_values_lists_each_value_with_its_calls(built):
    db_path, _, store = built
    rows = query(db_path, "select column_name, value, calls from analytics.unknown_enum_values")
    listed = {(column, value): calls for column, value, calls in rows}
    assert listed == expected_unknown_enum_values(store.truth())
    assert listed[("disposition", "transferred")] == 3
    assert listed[("status", "queued")] == 2
    assert listed[("call_method", "ai-dialer")] == 3
