-- One row per existing Close call: the grain every call-analytics mart aggregates. Incremental:
-- a build replaces the rows of the calls changed since the last one (build_state.changed_calls,
-- set by the build's on-run-start hook: macros/incremental_build.sql), and records the days
-- they left or entered for the daily marts (build_state.changed_days).
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_calls() }}",
    post_hook="{{ record_changed_days() }}",
    meta={"changed_rows": "calls"},
) }}
-- depends_on: {{ ref('stg_close__calls') }}
-- depends_on: {{ ref('stg_close__call_transcript_utterances') }}
-- depends_on: {{ ref('stg_close__outcomes') }}
-- depends_on: {{ ref('stg_close__users') }}
select
    call_id,
    lead_id,
    contact_id,
    user_id,
    user_name,
    direction,
    call_method,
    disposition,
    status,
    "source",
    outcome_id,
    outcome_name,
    activity_at,
    created_at,
    call_date,
    call_hour,
    duration_seconds,
    voicemail_duration_seconds,
    cost_cents,
    cost_usd,
    is_answered,
    is_voicemail,
    is_voicemail_left,
    has_transcript,
    utterance_count,
    talk_seconds,
    contact_talk_seconds,
    user_talk_seconds,
    contact_talk_share,
    sequence_id,
    sequence_name

{% if is_incremental() -%}
{#- int_calls_enriched of the changed calls, filtered before its joins and transcript aggregate
    (macros/enrich_calls.sql): a filter on the view would enrich every call first -#}
{%- set changed = in_changed_calls() -%}
{%- set changed_calls -%}
    (select * from {{ ref('stg_close__calls') }} where {{ changed }})
{%- endset -%}
{%- set changed_utterances -%}
    (select * from {{ ref('stg_close__call_transcript_utterances') }} where {{ changed }})
{%- endset -%}
from ({{ calls_enriched(changed_calls, '(' ~ aggregate_transcripts(changed_utterances) ~ ')') }}) as enriched
{%- else -%}
from {{ ref('int_calls_enriched') }}
{%- endif %}
