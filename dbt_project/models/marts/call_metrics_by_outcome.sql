-- One row per outcome_id; calls without an outcome form one row with a null outcome_id.
with calls as (

    select * from {{ ref('fct_calls') }}

),

by_outcome as (

    select
        outcome_id,
        max(outcome_name) as outcome_name,
        count(*) as calls,
        count(*) filter (where is_answered) as answered_calls,
        cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
        cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd
    from calls
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
