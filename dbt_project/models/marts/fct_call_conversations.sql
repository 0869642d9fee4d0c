-- One row per existing call whose recording transcript has at least one utterance: conversation
-- metrics from its utterances (int_call_utterances_sequenced), with user_id and call_date as in
-- fct_calls. Voicemail transcripts (one-sided) are not used. Incremental, as fct_calls.
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_calls() }}",
    meta={"changed_rows": "calls"},
) }}
-- depends_on: {{ ref('stg_close__call_transcript_utterances') }}
with calls as (

    select * from {{ ref('fct_calls') }}

),

utterances as (

    {% if is_incremental() -%}
    {#- the changed calls' utterances, sequenced (the view would sequence every utterance) -#}
    {%- set changed_utterances -%}
    (
        select * from {{ ref('stg_close__call_transcript_utterances') }}
        where {{ in_changed_calls() }}
    )
    {%- endset %}
    select * from ({{ sequence_utterances(changed_utterances) }})
    {%- else -%}
    select * from {{ ref('int_call_utterances_sequenced') }}
    {%- endif %}

),

per_call as (

    select
        call_id,
        count(*) as utterance_count,
        {{ floor_at_zero('max(end_seconds) - min(start_seconds)') }} as conversation_seconds,
        coalesce(sum(speaking_seconds) filter (where speaker_side = 'close-user'), 0.0) as user_talk_seconds,
        coalesce(sum(speaking_seconds) filter (where speaker_side = 'contact'), 0.0) as contact_talk_seconds,
        coalesce(max(side_run_seconds) filter (where speaker_side = 'close-user'), 0.0) as longest_user_monologue_seconds,
        coalesce(max(side_run_seconds) filter (where speaker_side = 'contact'), 0.0) as longest_contact_monologue_seconds,
        count(*) filter (where is_speaker_switch) as speaker_switches,
        count(*) filter (where speaker_side = 'close-user' and is_question) as user_questions,
        count(*) filter (where speaker_side = 'contact' and is_question) as contact_questions,
        avg(user_response_gap_seconds) as patience_seconds

    from utterances
    group by call_id

)

select
    calls.call_id,
    calls.user_id,
    calls.call_date,
    per_call.utterance_count,
    per_call.conversation_seconds,
    per_call.user_talk_seconds,
    per_call.contact_talk_seconds,
    per_call.user_talk_seconds
        / nullif(per_call.user_talk_seconds + per_call.contact_talk_seconds, 0) as user_talk_share,
    per_call.longest_user_monologue_seconds,
    per_call.longest_contact_monologue_seconds,
    per_call.speaker_switches,
    per_call.speaker_switches / nullif(per_call.conversation_seconds / 60.0, 0) as switches_per_minute,
    per_call.user_questions,
    per_call.contact_questions,
    per_call.patience_seconds

from per_call
inner join calls on per_call.call_id = calls.call_id
