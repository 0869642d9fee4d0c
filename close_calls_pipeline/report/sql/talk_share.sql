-- The rep's talk share of each transcribed call in the period: a 10-bucket histogram (bucket i
-- holds shares in [i/10, (i+1)/10), the last one includes 1) over calls with a talk share.
with shares as (

    select conversations.user_talk_share
    from analytics.fct_call_conversations as conversations
    join analytics.fct_calls as calls on calls.call_id = conversations.call_id
    where calls.call_date between $start and $end
      and conversations.user_talk_share is not null

)

select
    least(cast(floor(user_talk_share * 10) as integer), 9) as bucket,
    count(*) as calls
from shares
group by bucket
order by bucket
