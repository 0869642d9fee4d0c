-- Existing calls joined to their outcome, user and transcript aggregates, with reporting date and flags.
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
with calls as (

    select * from {{ ref('stg_close__calls') }}

),

outcomes as (

    select * from {{ ref('stg_close__outcomes') }}

),

users as (

    select * from {{ ref('stg_close__users') }}

),

transcripts as (

    select * from {{ ref('int_call_transcripts_aggregated') }}

)

select
    calls.call_id,
    calls.lead_id,
    calls.contact_id,
    calls.user_id,
    coalesce(users.user_name, calls.user_name) as user_name,
    calls.direction,
    calls.call_method,
    calls.disposition,
    calls.status,
    calls."source",
    calls.outcome_id,
    outcomes.outcome_name,
    calls.created_at,
    calls.activity_at,
    {{ to_reporting_date('coalesce(calls.activity_at, calls.created_at)') }} as call_date,
    calls.duration_seconds,
    calls.voicemail_duration_seconds,
    calls.cost_cents,
    {{ cents_to_dollars('calls.cost_cents') }} as cost_usd,
    coalesce(calls.disposition = 'answered', false) as is_answered,
    coalesce(calls.disposition in ('vm-left', 'vm-answer'), false) as is_voicemail,
    coalesce(calls.disposition = 'vm-left', false) as is_voicemail_left,
    calls.has_recording_transcript,
    calls.has_voicemail_transcript,
    calls.has_recording_transcript or calls.has_voicemail_transcript as has_transcript,
    coalesce(transcripts.utterance_count, 0) as utterance_count,
    coalesce(transcripts.talk_seconds, 0.0) as talk_seconds,
    coalesce(transcripts.contact_talk_seconds, 0.0) as contact_talk_seconds,
    coalesce(transcripts.user_talk_seconds, 0.0) as user_talk_seconds,
    transcripts.contact_talk_share,
    calls.sequence_id,
    calls.sequence_name,
    calls.dialer_id

from calls
left join outcomes on calls.outcome_id = outcomes.outcome_id
left join users on calls.user_id = users.user_id
left join transcripts on calls.call_id = transcripts.call_id
