-- Per rep: percentiles of the rep's talk share over their transcribed calls in the period.
select
    calls.user_id,
    max(calls.user_name) as user_name,
    count(*) as calls,
    quantile_cont(conversations.user_talk_share, [0.1, 0.25, 0.5, 0.75, 0.9]) as percentiles
from analytics.fct_call_conversations as conversations
join analytics.fct_calls as calls on calls.call_id = conversations.call_id
where calls.call_date between $start and $end
  and conversations.user_talk_share is not null
group by calls.user_id
order by count(*) desc, user_name, calls.user_id
