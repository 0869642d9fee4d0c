-- One row per (call_date, user_id) with at least one call; a null user_id is one group per day.
with calls as (

    select * from {{ ref('fct_calls') }}

),

per_user_day as (

    select
        call_date,
        user_id,
        max(user_name) as user_name,
        {{ call_additive_measures() }}
    from calls
    group by call_date, user_id

),

with_ratios as (

    select
        *,
        {{ call_ratio_measures() }}
    from per_user_day

)

select
    call_date,
    user_id,
    user_name,
    {{ call_measure_columns() }}
from with_ratios
order by call_date, user_id
