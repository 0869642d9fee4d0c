"""`close-calls bench --scenario hourly` splits an incremental `dbt_build` step into its phases
from the run's progress lines (the figures docs/incremental.md gives)."""

from close_calls_pipeline.bench.hourly import dbt_step_split


def test_an_incremental_dbt_build_step_is_split_into_its_phases():
    output = [
        "[   5.0s] close_calls: done in 1.0 s",
        "[   6.0s] dbt_build: started",
        "[   6.5s]   dbt build: incremental (5000 calls changed)",
        "[   8.0s]   compiled 99 dbt tests for incremental builds in 1.5 s (once per version)",
        "[  10.5s]   dbt run: done in 2.4 s",
        "[  12.5s]   100 data tests on the changed rows in 30 queries, 2.0 s: 100 pass",
        "[  14.0s] dbt_build: done in 8.0 s",
        "[  14.1s] call_report: started",
    ]
    assert dbt_step_split(output) == (
        "plan 0.5, compile tests 1.5, dbt (start, models, recording them) 2.5, data tests 2.0, "
        "check results recorded 1.5"
    )
    assert dbt_step_split(output[:3] + output[6:]) is None  # a full build: no split
