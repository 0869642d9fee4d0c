-- Per rep (user_id) in the period, plus the team (all calls) as the first row: the additive
-- columns of analytics.call_metrics_by_user_daily summed over the period's days, then divided.
-- Conversation means are over the calls with a conversation; questions are the rep's own.
with totals as (

    select
        grouping(user_id) = 1 as is_team,
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
        sum(user_questions) as user_questions,
        sum(sum_patience_seconds) as sum_patience_seconds,
        sum(calls_with_patience) as calls_with_patience
    from analytics.call_metrics_by_user_daily
    where call_date between $start and $end
    group by grouping sets ((user_id), ())

)

select
    is_team,
    user_id,
    user_name,
    calls,
    answered_calls,
    cast(answered_calls as double) / nullif(calls, 0) as answer_rate,
    total_duration_seconds,
    total_cost_usd,
    calls_with_conversation,
    sum_user_talk_share / nullif(calls_with_user_talk_share, 0) as avg_user_talk_share,
    sum_longest_user_monologue_seconds / nullif(calls_with_conversation, 0)
        as avg_longest_user_monologue_seconds,
    cast(user_questions as double) / nullif(calls_with_conversation, 0) as user_questions_per_call,
    sum_patience_seconds / nullif(calls_with_patience, 0) as avg_patience_seconds
from totals
order by is_team desc, calls desc, user_name, user_id
