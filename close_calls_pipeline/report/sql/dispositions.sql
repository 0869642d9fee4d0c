-- Calls per disposition in the period (the mart call_metrics_by_disposition covers all time).
select
    coalesce(disposition, '(none)') as disposition,
    count(*) as calls,
    cast(count(*) as double) / sum(count(*)) over () as share_of_calls
from analytics.fct_calls
where call_date between $start and $end
group by disposition
order by calls desc, disposition
