-- Stand-in for the mart analytics.fct_call_conversations (same columns, same definitions) for a
-- warehouse built before that mart existed: one row per existing call with a non-empty recording
-- transcript, from the staging utterances (which only hold utterances of existing calls).
with utterances as (

    select
        call_id,
        utterance_index,
        speaker_side,
        start_seconds,
        end_seconds,
        duration_seconds,
        utterance_text,
        lag(speaker_side) over turn as previous_side,
        lag(end_seconds) over turn as previous_end
    from staging.stg_close__call_transcript_utterances
    where transcript_type = 'recording'
    window turn as (partition by call_id order by utterance_index)

),

runs as (

    -- a run (monologue) is a maximal sequence of consecutive utterances of one side
    select
        *,
        sum(case when previous_side is distinct from speaker_side then 1 else 0 end) over (
            partition by call_id order by utterance_index rows unbounded preceding
        ) as run_number
    from utterances

),

monologues as (

    select call_id, speaker_side, max(end_seconds) - min(start_seconds) as seconds
    from runs
    group by call_id, speaker_side, run_number

),

longest as (

    select
        call_id,
        coalesce(max(seconds) filter (where speaker_side = 'close-user'), 0.0)
            as longest_user_monologue_seconds,
        coalesce(max(seconds) filter (where speaker_side = 'contact'), 0.0)
            as longest_contact_monologue_seconds
    from monologues
    group by call_id

),

per_call as (

    select
        call_id,
        count(*) as utterance_count,
        max(end_seconds) - min(start_seconds) as conversation_seconds,
        coalesce(sum(duration_seconds) filter (where speaker_side = 'close-user'), 0.0)
            as user_talk_seconds,
        coalesce(sum(duration_seconds) filter (where speaker_side = 'contact'), 0.0)
            as contact_talk_seconds,
        count(*) filter (where previous_side is not null and previous_side <> speaker_side)
            as speaker_switches,
        count(*) filter (where speaker_side = 'close-user' and utterance_text like '%?%')
            as user_questions,
        count(*) filter (where speaker_side = 'contact' and utterance_text like '%?%')
            as contact_questions,
        avg(greatest(start_seconds - previous_end, 0.0)) filter (
            where previous_side = 'contact' and speaker_side = 'close-user'
        ) as patience_seconds
    from utterances
    group by call_id

)

select
    per_call.call_id,
    calls.user_id,
    calls.call_date,
    per_call.utterance_count,
    per_call.conversation_seconds,
    per_call.user_talk_seconds,
    per_call.contact_talk_seconds,
    per_call.user_talk_seconds
        / nullif(per_call.user_talk_seconds + per_call.contact_talk_seconds, 0) as user_talk_share,
    longest.longest_user_monologue_seconds,
    longest.longest_contact_monologue_seconds,
    per_call.speaker_switches,
    per_call.speaker_switches / nullif(per_call.conversation_seconds / 60.0, 0)
        as switches_per_minute,
    per_call.user_questions,
    per_call.contact_questions,
    per_call.patience_seconds
from per_call
join analytics.fct_calls as calls on calls.call_id = per_call.call_id
join longest on longest.call_id = per_call.call_id
