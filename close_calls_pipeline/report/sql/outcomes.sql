-- Calls per outcome in the period (the mart call_metrics_by_outcome covers all time). Calls with
-- no outcome are one row; outcome ids unknown to close.outcomes (e.g. deleted) are merged in one.
with labelled as (

    select
        case when outcome_name is not null then outcome_id end as outcome_key,
        case
            when outcome_id is null then 'No outcome'
            when outcome_name is null then 'Deleted or unknown outcome'
            else outcome_name
        end as outcome,
        outcome_id is null or outcome_name is null as is_unset,
        is_answered
    from analytics.fct_calls
    where call_date between $start and $end

)

select
    outcome,
    is_unset,
    count(*) as calls,
    cast(count(*) as double) / sum(count(*)) over () as share_of_calls,
    count(*) filter (where is_answered) as answered_calls
from labelled
group by outcome_key, outcome, is_unset
order by calls desc, outcome
