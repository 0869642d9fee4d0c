-- One row per call_date from the first to the last call date; days without calls are zero-filled.
with calls as (

    select * from {{ ref('fct_calls') }}

),

bounds as (

    select min(call_date) as first_call_date, max(call_date) as last_call_date
    from calls

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

daily as (

    select
        call_date,
        {{ call_additive_measures() }}
    from calls
    where call_date is not null
    group by call_date

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
