-- One row per day of the period, zero-filled (the mart only spans its first to last call date).
with days as (

    select cast(unnest(generate_series(
        cast($start as timestamp), cast($end as timestamp), interval 1 day
    )) as date) as call_date

)

select
    days.call_date,
    coalesce(daily.calls, 0) as calls,
    coalesce(daily.answered_calls, 0) as answered_calls,
    daily.answer_rate
from days
left join analytics.call_metrics_daily as daily on daily.call_date = days.call_date
order by days.call_date
