-- One row per (call_date, user_id) with at least one call; a null user_id is one group per day.
-- Every column that is not a ratio is additive: a period's figure is the sum of its days, and a
-- period's mean is the sum of its numerator column over the sum of its denominator column.
-- Incremental: a build recomputes only the days its changed calls left or entered
-- (build_state.changed_days, written by fct_calls).
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_days() }}",
    meta={"changed_rows": "days"},
) }}
with calls as (

    select * from {{ ref('fct_calls') }}
    {% if is_incremental() -%}
    where {{ in_changed_days('call_date') }}
    {%- endif %}

),

conversations as (

    select * from {{ ref('fct_call_conversations') }}

),

calls_with_conversations as (

    select
        calls.*,
        conversations.call_id is not null as has_conversation,
        conversations.user_talk_share as conversation_user_talk_share,
        conversations.longest_user_monologue_seconds as conversation_longest_user_monologue_seconds,
        conversations.switches_per_minute as conversation_switches_per_minute,
        conversations.user_questions as conversation_user_questions,
        conversations.contact_questions as conversation_contact_questions,
        conversations.patience_seconds as conversation_patience_seconds
    from calls
    left join conversations on calls.call_id = conversations.call_id

),

per_user_day as (

    select
        call_date,
        user_id,
        max(user_name) as user_name,
        {{ call_additive_measures() }},
        count(*) filter (where has_conversation) as calls_with_conversation,
        count(conversation_user_talk_share) as calls_with_user_talk_share,
        coalesce(sum(conversation_user_talk_share), 0) as sum_user_talk_share,
        coalesce(sum(conversation_longest_user_monologue_seconds), 0)
            as sum_longest_user_monologue_seconds,
        count(conversation_switches_per_minute) as calls_with_switches_per_minute,
        coalesce(sum(conversation_switches_per_minute), 0) as sum_switches_per_minute,
        cast(coalesce(sum(conversation_user_questions), 0) as bigint) as user_questions,
        cast(coalesce(sum(conversation_contact_questions), 0) as bigint) as contact_questions,
        count(conversation_patience_seconds) as calls_with_patience,
        coalesce(sum(conversation_patience_seconds), 0) as sum_patience_seconds
    from calls_with_conversations
    group by call_date, user_id

),

with_ratios as (

    select
        *,
        {{ call_ratio_measures() }}
    from per_user_day

)

select
    call_date,
    user_id,
    user_name,
    {{ call_measure_columns() }},
    calls_with_conversation,
    calls_with_user_talk_share,
    sum_user_talk_share,
    sum_longest_user_monologue_seconds,
    calls_with_switches_per_minute,
    sum_switches_per_minute,
    user_questions,
    contact_questions,
    calls_with_patience,
    sum_patience_seconds
from with_ratios
order by call_date, user_id
