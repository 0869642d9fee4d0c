-- Transcript utterances of existing calls: the sync drops a call's utterances in the transaction
-- that marks it deleted (mark_deleted.sql), and the blocking Dagster check no_orphan_utterances
-- and this model's relationships test hold it to that, so no filter on the calls here (it would
-- cost a scan of every call in each query on utterances).
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
with utterances_source as (

    select * from {{ source('close', 'call_transcript_utterances') }}

),

renamed as (

    select
        u.call_id || ':' || u.transcript_type || ':' || cast(u.utterance_index as varchar) as utterance_id,
        u.call_id,
        u.transcript_type,
        u.utterance_index,
        u.speaker_label,
        u.speaker_side,
        u.start_seconds,
        u.end_seconds,
        case
            when u.end_seconds >= u.start_seconds then u.end_seconds - u.start_seconds
            when u.end_seconds < u.start_seconds then 0.0
        end as duration_seconds,
        u.text as utterance_text,
        u.is_question,
        u._loaded_at as loaded_at

    from utterances_source as u

)

select * from renamed
