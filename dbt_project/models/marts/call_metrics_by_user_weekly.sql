-- One row per user and ISO week (Monday to Sunday, of call_date in var reporting_timezone), from
-- each user's first to last week with calls; weeks in between without calls are zero-filled.
-- The additive columns of call_metrics_by_user_daily summed per week, then divided: the weekly
-- and the report's per-rep figures have one definition.
-- A view over the day-grained mart (one row per day and group: small), so a build never
-- rebuilds it.
{{ config(materialized='view') }}
with daily as (

    select * from {{ ref('call_metrics_by_user_daily') }}
    where call_date is not null

),

per_user_week as (

    select
        cast(date_trunc('week', call_date) as date) as week_start,
        user_id,
        max(user_name) as user_name,
        cast(sum(calls) as bigint) as calls,
        cast(sum(answered_calls) as bigint) as answered_calls,
        cast(sum(total_duration_seconds) as bigint) as total_duration_seconds,
        cast(sum(total_cost_usd) as decimal(38, 8)) as total_cost_usd,
        cast(sum(calls_with_conversation) as bigint) as calls_with_conversation,
        sum(sum_user_talk_share) as sum_user_talk_share,
        sum(calls_with_user_talk_share) as calls_with_user_talk_share,
        sum(sum_longest_user_monologue_seconds) as sum_longest_user_monologue_seconds,
        sum(sum_switches_per_minute) as sum_switches_per_minute,
        sum(calls_with_switches_per_minute) as calls_with_switches_per_minute,
        sum(sum_patience_seconds) as sum_patience_seconds,
        sum(calls_with_patience) as calls_with_patience,
        sum(user_questions) + sum(contact_questions) as questions
    from daily
    group by week_start, user_id

),

users as (

    select
        user_id,
        max(user_name) as user_name,
        min(week_start) as first_week_start,
        max(week_start) as last_week_start
    from per_user_week
    group by user_id

),

week_spine as (

    select
        users.user_id,
        users.user_name,
        cast(weeks.range as date) as week_start
    from users,
        range(
            cast(users.first_week_start as timestamp),
            cast(users.last_week_start as timestamp) + interval 7 day,
            interval 7 day
        ) as weeks

)

select
    week_spine.week_start,
    strftime(week_spine.week_start, '%G-W%V') as iso_week,
    week_spine.user_id,
    week_spine.user_name,
    coalesce(per_user_week.calls, 0) as calls,
    coalesce(per_user_week.answered_calls, 0) as answered_calls,
    cast(per_user_week.answered_calls as double) / nullif(per_user_week.calls, 0) as answer_rate,
    coalesce(per_user_week.total_duration_seconds, 0) as total_duration_seconds,
    coalesce(per_user_week.total_cost_usd, 0) as total_cost_usd,
    coalesce(per_user_week.calls_with_conversation, 0) as calls_with_conversation,
    per_user_week.sum_user_talk_share
        / nullif(per_user_week.calls_with_user_talk_share, 0) as avg_user_talk_share,
    per_user_week.sum_longest_user_monologue_seconds
        / nullif(per_user_week.calls_with_conversation, 0) as avg_longest_user_monologue_seconds,
    per_user_week.sum_switches_per_minute
        / nullif(per_user_week.calls_with_switches_per_minute, 0) as avg_switches_per_minute,
    per_user_week.sum_patience_seconds
        / nullif(per_user_week.calls_with_patience, 0) as avg_patience_seconds,
    cast(per_user_week.questions as double)
        / nullif(per_user_week.calls_with_conversation, 0) as questions_per_call

from week_spine
left join per_user_week
    on week_spine.week_start = per_user_week.week_start
    and week_spine.user_id is not distinct from per_user_week.user_id
order by week_spine.user_id, week_spine.week_start
