-- Calls and answered calls by ISO weekday (1 = Monday) and hour of activity_at in zone $tz.
-- Calls without activity_at have no hour and are counted apart (weekday and hour null).
select
    isodow(timezone($tz, activity_at)) as weekday,
    hour(timezone($tz, activity_at)) as hour,
    count(*) as calls,
    count(*) filter (where is_answered) as answered_calls
from analytics.fct_calls
where call_date between $start and $end
group by all
order by weekday, hour
