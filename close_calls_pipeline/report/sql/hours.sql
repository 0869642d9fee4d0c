-- Calls and answered calls by ISO weekday (1 = Monday) and hour in the period:
-- analytics.call_metrics_by_hour_daily summed over the period's days.
select
    weekday,
    hour,
    cast(sum(calls) as bigint) as calls,
    cast(sum(answered_calls) as bigint) as answered_calls
from analytics.call_metrics_by_hour_daily
where call_date between $start and $end
group by weekday, hour
order by weekday, hour
