-- One row per outcome_id over all existing calls; calls without an outcome form one row with a
-- null outcome_id: the sum of call_metrics_by_outcome_daily's days.
-- A view over the day-grained mart (one row per day and group: small), so a build never
-- rebuilds it.
{{ config(materialized='view') }}
with by_outcome as (

    select
        outcome_id,
        max(outcome_name) as outcome_name,
        cast(sum(calls) as bigint) as calls,
        cast(sum(answered_calls) as bigint) as answered_calls,
        cast(sum(total_duration_seconds) as bigint) as total_duration_seconds,
        cast(sum(total_cost_usd) as decimal(38, 8)) as total_cost_usd
    from {{ ref('call_metrics_by_outcome_daily') }}
    group by outcome_id

)

select
    outcome_id,
    outcome_name,
    calls,
    cast(calls as double) / sum(calls) over () as share_of_calls,
    answered_calls,
    cast(answered_calls as double) / nullif(calls, 0) as answer_rate,
    total_duration_seconds,
    total_cost_usd
from by_outcome
order by calls desc, outcome_id
