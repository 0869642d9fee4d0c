-- One row per call that has at least one transcript utterance (recording and voicemail combined).
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
with utterances as (

    select * from {{ ref('stg_close__call_transcript_utterances') }}

),

aggregated as (

    select
        call_id,
        count(*) as utterance_count,
        count(*) filter (where transcript_type = 'recording') as recording_utterance_count,
        count(*) filter (where transcript_type = 'voicemail') as voicemail_utterance_count,
        coalesce(sum(duration_seconds), 0.0) as talk_seconds,
        coalesce(sum(duration_seconds) filter (where speaker_side = 'contact'), 0.0) as contact_talk_seconds,
        coalesce(sum(duration_seconds) filter (where speaker_side = 'close-user'), 0.0) as user_talk_seconds

    from utterances
    group by call_id

)

select
    *,
    contact_talk_seconds / nullif(contact_talk_seconds + user_talk_seconds, 0) as contact_talk_share,
    user_talk_seconds / nullif(contact_talk_seconds + user_talk_seconds, 0) as user_talk_share
from aggregated
