-- One row per user and ISO week (Monday to Sunday, of call_date in var reporting_timezone), from
-- each user's first to last week with calls; weeks in between without calls are zero-filled.
with calls as (

    select * from {{ ref('fct_calls') }}
    where call_date is not null

),

conversations as (

    select * from {{ ref('fct_call_conversations') }}

),

calls_by_week as (

    select
        cast(date_trunc('week', calls.call_date) as date) as week_start,
        calls.user_id,
        calls.user_name,
        calls.is_answered,
        calls.duration_seconds,
        calls.cost_usd,
        conversations.call_id is not null as has_conversation,
        conversations.user_talk_share,
        conversations.longest_user_monologue_seconds,
        conversations.switches_per_minute,
        conversations.patience_seconds,
        conversations.user_questions + conversations.contact_questions as questions
    from calls
    left join conversations on calls.call_id = conversations.call_id

),

per_user_week as (

    select
        week_start,
        user_id,
        count(*) as calls,
        count(*) filter (where is_answered) as answered_calls,
        cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
        cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd,
        count(*) filter (where has_conversation) as calls_with_conversation,
        avg(user_talk_share) as avg_user_talk_share,
        avg(longest_user_monologue_seconds) as avg_longest_user_monologue_seconds,
        avg(switches_per_minute) as avg_switches_per_minute,
        avg(patience_seconds) as avg_patience_seconds,
        sum(questions) as questions
    from calls_by_week
    group by week_start, user_id

),

users as (

    select
        user_id,
        max(user_name) as user_name,
        min(week_start) as first_week_start,
        max(week_start) as last_week_start
    from calls_by_week
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
    per_user_week.avg_user_talk_share,
    per_user_week.avg_longest_user_monologue_seconds,
    per_user_week.avg_switches_per_minute,
    per_user_week.avg_patience_seconds,
    cast(per_user_week.questions as double)
        / nullif(per_user_week.calls_with_conversation, 0) as questions_per_call

from week_spine
left join per_user_week
    on week_spine.week_start = per_user_week.week_start
    and week_spine.user_id is not distinct from per_user_week.user_id
order by week_spine.user_id, week_spine.week_start
