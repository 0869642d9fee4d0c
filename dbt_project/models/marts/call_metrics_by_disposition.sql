-- One row per disposition over all existing calls (a null disposition is its own row): the sum
-- of call_metrics_by_disposition_daily's days.
-- A view over the day-grained mart (one row per day and group: small), so a build never
-- rebuilds it.
{{ config(materialized='view') }}
with by_disposition as (

    select
        disposition,
        cast(sum(calls) as bigint) as calls,
        cast(sum(total_duration_seconds) as bigint) as total_duration_seconds,
        cast(sum(total_cost_usd) as decimal(38, 8)) as total_cost_usd
    from {{ ref('call_metrics_by_disposition_daily') }}
    group by disposition

)

select
    disposition,
    calls,
    cast(calls as double) / sum(calls) over () as share_of_calls,
    total_duration_seconds,
    cast(total_duration_seconds as double) / nullif(calls, 0) as avg_duration_seconds,
    total_cost_usd
from by_disposition
order by calls desc, disposition
