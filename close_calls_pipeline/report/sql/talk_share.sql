-- The rep's talk share of each transcribed call in the period (analytics.fct_call_conversations,
-- one row per call): a 10-bucket histogram (bucket i holds shares in [i/10, (i+1)/10), the last
-- one includes 1) over calls with a talk share.
select
    least(cast(floor(user_talk_share * 10) as integer), 9) as bucket,
    count(*) as calls
from analytics.fct_call_conversations
where call_date between $start and $end
  and user_talk_share is not null
group by bucket
order by bucket
