-- One row per disposition (a null disposition is its own row).
with calls as (

    select * from {{ ref('fct_calls') }}

),

by_disposition as (

    select
        disposition,
        count(*) as calls,
        cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
        cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd
    from calls
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
