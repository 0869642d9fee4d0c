-- "When do we reach people?": one row per ISO weekday (1 = Monday .. 7 = Sunday) and hour
-- (0-23) of when the call happened (activity_at, else created_at) in var reporting_timezone,
-- over all existing calls: the sum of call_metrics_by_hour_daily's days. All 7 x 24 cells are
-- present; cells without calls have zeros.
-- A view over the day-grained mart (one row per day and group: small), so a build never
-- rebuilds it.
{{ config(materialized='view') }}
with per_cell as (

    select
        weekday,
        hour,
        cast(sum(calls) as bigint) as calls,
        cast(sum(answered_calls) as bigint) as answered_calls
    from {{ ref('call_metrics_by_hour_daily') }}
    group by weekday, hour

),

cells as (

    select
        weekdays.range as weekday,
        hours.range as hour
    from range(1, 8) as weekdays, range(0, 24) as hours

)

select
    cast(cells.weekday as integer) as weekday,
    ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'][cells.weekday] as weekday_name,
    cast(cells.hour as integer) as hour,
    coalesce(per_cell.calls, 0) as calls,
    coalesce(per_cell.answered_calls, 0) as answered_calls,
    cast(per_cell.answered_calls as double) / nullif(per_cell.calls, 0) as answer_rate

from cells
left join per_cell on cells.weekday = per_cell.weekday and cells.hour = per_cell.hour
order by cells.weekday, cells.hour
