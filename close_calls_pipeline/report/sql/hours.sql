-- Calls and answered calls by ISO weekday (1 = Monday) and hour of when the call happened
-- (activity_at, else created_at) in zone $tz, as analytics.call_metrics_by_hour does over all
-- time. A call with neither timestamp has no cell (weekday and hour null).
select
    isodow(timezone($tz, coalesce(activity_at, created_at))) as weekday,
    hour(timezone($tz, coalesce(activity_at, created_at))) as hour,
    count(*) as calls,
    count(*) filter (where is_answered) as answered_calls
from analytics.fct_calls
where call_date between $start and $end
group by all
order by weekday, hour
