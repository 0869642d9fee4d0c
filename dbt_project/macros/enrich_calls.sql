{#- The bodies of int_call_transcripts_aggregated and int_calls_enriched, as macros over the rows
    they start from, so that fct_calls' incremental build enriches the changed calls only: a
    filter on the view int_calls_enriched is applied above its joins and its aggregate of every
    utterance, so DuckDB would enrich every call to keep the changed ones (macros/
    sequence_utterances.sql is the same for fct_call_conversations). The views are these over
    every row. -#}

{#- Utterances (rows of stg_close__call_transcript_utterances) aggregated per call, recording and
    voicemail transcripts combined: int_call_transcripts_aggregated. -#}
{% macro aggregate_transcripts(utterances) -%}
with utterances as (

    select * from {{ utterances }}

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
{%- endmacro %}

{#- Calls (rows of stg_close__calls) joined to their outcome, user and transcript aggregates
    (`transcripts`: rows of int_call_transcripts_aggregated), with reporting date and flags:
    int_calls_enriched. -#}
{% macro calls_enriched(calls, transcripts) -%}
with calls as (

    select * from {{ calls }}

),

outcomes as (

    select * from {{ ref('stg_close__outcomes') }}

),

users as (

    select * from {{ ref('stg_close__users') }}

),

transcripts as (

    select * from {{ transcripts }}

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
    cast(hour({{ to_reporting_timestamp('coalesce(calls.activity_at, calls.created_at)') }}) as integer)
        as call_hour,
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
{%- endmacro %}
