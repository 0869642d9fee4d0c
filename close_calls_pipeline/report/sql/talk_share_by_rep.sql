-- Per rep: percentiles of the rep's talk share over their transcribed calls in the period
-- (analytics.fct_call_conversations, one row per call). Ordered like the reps table in Python.
select
    user_id,
    count(*) as calls,
    quantile_cont(user_talk_share, [0.1, 0.25, 0.5, 0.75, 0.9]) as percentiles
from analytics.fct_call_conversations
where call_date between $start and $end
  and user_talk_share is not null
group by user_id
