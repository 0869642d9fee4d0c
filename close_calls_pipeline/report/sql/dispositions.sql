-- Calls per disposition in the period: analytics.call_metrics_by_disposition_daily summed.
select
    coalesce(disposition, '(none)') as disposition,
    cast(sum(calls) as bigint) as calls,
    cast(sum(calls) as double) / sum(sum(calls)) over () as share_of_calls
from analytics.call_metrics_by_disposition_daily
where call_date between $start and $end
group by disposition
order by calls desc, disposition
