-- Transcript utterances of existing calls only (utterances of deleted calls are dropped).
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
with utterances_source as (

    select * from {{ source('close', 'call_transcript_utterances') }}

),

existing_calls as (

    select id as call_id
    from {{ source('close', 'calls') }}
    where _deleted_at is null

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
    where u.call_id in (select call_id from existing_calls)

)

select * from renamed
