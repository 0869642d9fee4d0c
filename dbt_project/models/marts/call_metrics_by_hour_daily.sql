-- One row per call_date and hour (0-23) with at least one call, of when the call happened
-- (activity_at, else created_at) in var reporting_timezone (fct_calls' call_hour): the day grain
-- of call_metrics_by_hour. call_date is the date of the same local timestamp, so its ISO weekday
-- (weekday, 1 = Monday) is the call's weekday.
-- Incremental: a build recomputes only the days its changed calls left or entered
-- (build_state.changed_days, written by fct_calls).
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_days() }}",
    meta={"changed_rows": "days"},
) }}
with calls as (

    select call_date, call_hour, is_answered
    from {{ ref('fct_calls') }}
    {% if is_incremental() -%}
    where {{ in_changed_days('call_date') }}
    {%- endif %}

)

select
    call_date,
    cast(isodow(call_date) as integer) as weekday,
    call_hour as hour,
    count(*) as calls,
    count(*) filter (where is_answered) as answered_calls
from calls
where call_hour is not null
group by all
order by call_date, hour
