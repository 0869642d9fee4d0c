-- One row per (call_date, disposition) with at least one call (a null disposition is its own
-- row): the day grain of call_metrics_by_disposition, so any period of days sums correctly.
-- Incremental: a build recomputes only the days its changed calls left or entered
-- (build_state.changed_days, written by fct_calls).
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_days() }}",
    meta={"changed_rows": "days"},
) }}
select
    call_date,
    disposition,
    count(*) as calls,
    cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
    cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd
from {{ ref('fct_calls') }}
{% if is_incremental() -%}
where {{ in_changed_days('call_date') }}
{% endif -%}
group by call_date, disposition
order by call_date, calls desc, disposition
