-- One row per call_date from the first to the last call date; days without calls are zero-filled.
-- A view over call_metrics_by_user_daily (every column but the ratios is additive there: a day's
-- figure is the sum of its users'), so a build never rebuilds it.
{{ config(materialized='view') }}
with daily as (

    select
        call_date,
        cast(sum(calls) as bigint) as calls,
        cast(sum(answered_calls) as bigint) as answered_calls,
        cast(sum(voicemails_left) as bigint) as voicemails_left,
        cast(sum(voicemails) as bigint) as voicemails,
        cast(sum(total_duration_seconds) as bigint) as total_duration_seconds,
        cast(sum(total_answered_duration_seconds) as bigint) as total_answered_duration_seconds,
        cast(sum(total_cost_usd) as decimal(38, 8)) as total_cost_usd,
        cast(sum(calls_with_transcript) as bigint) as calls_with_transcript,
        sum(total_talk_seconds) as total_talk_seconds,
        sum(contact_talk_seconds) as contact_talk_seconds,
        sum(user_talk_seconds) as user_talk_seconds
    from {{ ref('call_metrics_by_user_daily') }}
    where call_date is not null
    group by call_date

),

bounds as (

    select min(call_date) as first_call_date, max(call_date) as last_call_date
    from daily

),

date_spine as (

    -- Empty when there are no calls (generate_series over nulls yields no rows).
    select cast(unnest(generate_series(
        cast(first_call_date as timestamp),
        cast(last_call_date as timestamp),
        interval 1 day
    )) as date) as call_date
    from bounds

),

filled as (

    select
        date_spine.call_date,
        coalesce(daily.calls, 0) as calls,
        coalesce(daily.answered_calls, 0) as answered_calls,
        coalesce(daily.voicemails_left, 0) as voicemails_left,
        coalesce(daily.voicemails, 0) as voicemails,
        coalesce(daily.total_duration_seconds, 0) as total_duration_seconds,
        coalesce(daily.total_answered_duration_seconds, 0) as total_answered_duration_seconds,
        coalesce(daily.total_cost_usd, 0) as total_cost_usd,
        coalesce(daily.calls_with_transcript, 0) as calls_with_transcript,
        coalesce(daily.total_talk_seconds, 0) as total_talk_seconds,
        coalesce(daily.contact_talk_seconds, 0) as contact_talk_seconds,
        coalesce(daily.user_talk_seconds, 0) as user_talk_seconds
    from date_spine
    left join daily on date_spine.call_date = daily.call_date

),

with_ratios as (

    select
        *,
        {{ call_ratio_measures() }}
    from filled

)

select
    call_date,
    {{ call_measure_columns() }}
from with_ratios
order by call_date
