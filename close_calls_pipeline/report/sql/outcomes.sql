-- Calls per outcome in the period: analytics.call_metrics_by_outcome_daily summed. Calls with no
-- outcome are one row; outcome ids unknown to close.outcomes (e.g. deleted) are merged in one.
with labelled as (

    select
        case when outcome_name is not null then outcome_id end as outcome_key,
        case
            when outcome_id is null then 'No outcome'
            when outcome_name is null then 'Deleted or unknown outcome'
            else outcome_name
        end as outcome,
        outcome_id is null or outcome_name is null as is_unset,
        calls,
        answered_calls
    from analytics.call_metrics_by_outcome_daily
    where call_date between $start and $end

)

select
    outcome,
    is_unset,
    cast(sum(calls) as bigint) as calls,
    cast(sum(calls) as double) / sum(sum(calls)) over () as share_of_calls,
    cast(sum(answered_calls) as bigint) as answered_calls
from labelled
group by outcome_key, outcome, is_unset
order by calls desc, outcome
