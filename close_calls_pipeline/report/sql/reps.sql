-- Per rep (user_id) in the period, plus the team (all calls) as the first row. Conversation
-- figures are means over the calls with a row in fct_call_conversations (a non-empty recording
-- transcript), as in call_metrics_by_user_weekly; questions are the rep's own.
with calls as (

    select * from analytics.fct_calls
    where call_date between $start and $end

),

per_call as (

    select
        calls.user_id,
        calls.user_name,
        calls.is_answered,
        calls.duration_seconds,
        calls.cost_usd,
        conversations.call_id is not null as has_conversation,
        conversations.user_talk_share,
        conversations.longest_user_monologue_seconds,
        conversations.user_questions,
        conversations.patience_seconds
    from calls
    left join analytics.fct_call_conversations as conversations
        on conversations.call_id = calls.call_id

)

select
    grouping(user_id) = 1 as is_team,
    user_id,
    max(user_name) as user_name,
    count(*) as calls,
    count(*) filter (where is_answered) as answered_calls,
    cast(count(*) filter (where is_answered) as double) / nullif(count(*), 0) as answer_rate,
    cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
    cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd,
    count(*) filter (where has_conversation) as transcribed_calls,
    avg(user_talk_share) as avg_user_talk_share,
    avg(longest_user_monologue_seconds) as avg_longest_user_monologue_seconds,
    avg(user_questions) as user_questions_per_call,
    avg(patience_seconds) as avg_patience_seconds
from per_call
group by grouping sets ((user_id), ())
order by is_team desc, calls desc, user_name, user_id
