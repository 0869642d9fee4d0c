{#- Recording-transcript utterances of `utterances` (rows of stg_close__call_transcript_utterances),
    one row per utterance, in utterance_index order (start times never reorder them), with the
    per-utterance facts fct_call_conversations aggregates: speaker switches, runs of one side (gaps
    and islands) and contact -> user gaps. A macro, so that an incremental build sequences the
    changed calls' utterances only: a filter above the window functions would not reach below
    them. The view int_call_utterances_sequenced is this over every utterance. -#}
{% macro sequence_utterances(utterances) -%}
with utterances as (

    select * from {{ utterances }}
    where transcript_type = 'recording'

),

with_previous as (

    select
        call_id,
        utterance_index,
        speaker_side,
        start_seconds,
        end_seconds,
        duration_seconds as speaking_seconds,
        utterance_text,
        {{ question_flag('is_question', 'utterance_text') }} as is_question,
        row_number() over utterance_order = 1 as is_first_utterance,
        lag(speaker_side) over utterance_order as previous_speaker_side,
        lag(end_seconds) over utterance_order as previous_end_seconds

    from utterances
    window utterance_order as (partition by call_id order by utterance_index)

),

with_switches as (

    select
        *,
        not is_first_utterance and speaker_side is distinct from previous_speaker_side as is_speaker_switch
    from with_previous

),

with_runs as (

    select
        *,
        -- islands: a run of one side starts at the first utterance and at every switch
        cast(sum(case when is_first_utterance or is_speaker_switch then 1 else 0 end) over (
            partition by call_id order by utterance_index rows between unbounded preceding and current row
        ) as integer) as side_run_number
    from with_switches

),

with_run_spans as (

    select
        *,
        max(end_seconds) over side_run - min(start_seconds) over side_run as side_run_raw_seconds
    from with_runs
    window side_run as (partition by call_id, side_run_number)

)

select
    call_id,
    utterance_index,
    speaker_side,
    start_seconds,
    end_seconds,
    speaking_seconds,
    utterance_text,
    is_question,
    previous_speaker_side,
    is_speaker_switch,
    side_run_number,
    {{ floor_at_zero('side_run_raw_seconds') }} as side_run_seconds,
    case
        when previous_speaker_side = 'contact' and speaker_side = 'close-user'
            then {{ floor_at_zero('start_seconds - previous_end_seconds') }}
    end as user_response_gap_seconds

from with_run_spans
{%- endmacro %}
