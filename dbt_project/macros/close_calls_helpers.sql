{#- Exact cents -> dollars conversion: decimal multiplication (DuckDB's decimal division yields DOUBLE). -#}
{% macro cents_to_dollars(column_name) -%}
    cast(cast({{ column_name }} as decimal(38, 6)) * 0.01 as decimal(20, 8))
{%- endmacro %}

{#- Wall-clock TIMESTAMP of a TIMESTAMPTZ expression in the `reporting_timezone` var (default UTC). -#}
{% macro to_reporting_timestamp(timestamp_expression) -%}
    timezone('{{ var("reporting_timezone", "UTC") }}', {{ timestamp_expression }})
{%- endmacro %}

{#- Calendar date of a TIMESTAMPTZ expression in the `reporting_timezone` var (default UTC). -#}
{% macro to_reporting_date(timestamp_expression) -%}
    cast({{ to_reporting_timestamp(timestamp_expression) }} as date)
{%- endmacro %}

{#- A DOUBLE expression floored at 0, null when it is null (DuckDB's greatest() ignores nulls). -#}
{% macro floor_at_zero(expression) -%}
    case when ({{ expression }}) < 0 then cast(0 as double) else ({{ expression }}) end
{%- endmacro %}

{#- Additive call measures over rows of fct_calls (used with a GROUP BY). -#}
{% macro call_additive_measures() -%}
    count(*) as calls,
    count(*) filter (where is_answered) as answered_calls,
    count(*) filter (where is_voicemail_left) as voicemails_left,
    count(*) filter (where is_voicemail) as voicemails,
    cast(coalesce(sum(duration_seconds), 0) as bigint) as total_duration_seconds,
    cast(coalesce(sum(duration_seconds) filter (where is_answered), 0) as bigint) as total_answered_duration_seconds,
    cast(coalesce(sum(cost_usd), 0) as decimal(38, 8)) as total_cost_usd,
    count(*) filter (where has_transcript) as calls_with_transcript,
    coalesce(sum(talk_seconds), 0) as total_talk_seconds,
    coalesce(sum(contact_talk_seconds), 0) as contact_talk_seconds,
    coalesce(sum(user_talk_seconds), 0) as user_talk_seconds
{%- endmacro %}

{#- Ratios derived from call_additive_measures() columns (null when the denominator is 0). -#}
{% macro call_ratio_measures() -%}
    cast(answered_calls as double) / nullif(calls, 0) as answer_rate,
    cast(total_answered_duration_seconds as double) / nullif(answered_calls, 0) as avg_answered_duration_seconds,
    cast(total_cost_usd / nullif(answered_calls, 0) as decimal(20, 8)) as cost_per_answered_call_usd,
    contact_talk_seconds / nullif(contact_talk_seconds + user_talk_seconds, 0) as contact_talk_share
{%- endmacro %}

{#- Output order of the daily measure columns (call_metrics_daily, call_metrics_by_user_daily). -#}
{% macro call_measure_columns() -%}
    calls,
    answered_calls,
    answer_rate,
    voicemails_left,
    voicemails,
    total_duration_seconds,
    total_answered_duration_seconds,
    avg_answered_duration_seconds,
    total_cost_usd,
    cost_per_answered_call_usd,
    calls_with_transcript,
    total_talk_seconds,
    contact_talk_seconds,
    user_talk_seconds,
    contact_talk_share
{%- endmacro %}

{#- A list of strings as SQL string literals, comma separated: ['a', "b'c"] -> 'a', 'b''c'. -#}
{% macro sql_string_list(values) -%}
    {%- for value in values -%}
        '{{ value | string | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}


{% macro question_flag(flag, text) -%}
    {#- An utterance asks a question when its text contains '?'. The sync records the same flag
        (close.call_transcript_utterances.is_question) before a personal_data policy drops the
        text, so the flag decides when it is there and the text otherwise. -#}
    coalesce({{ flag }}, contains({{ text }}, '?'), false)
{%- endmacro %}

{#- A relation without its database, for the SQL of a view: DuckDB resolves it in the view's
    own database, so the view still works in a copy of the file opened under another name (the
    read-only copy). dbt's unit tests pass their fixtures as names: those are kept. -#}
{% macro in_this_database(relation) -%}
    {{- relation.include(database=false) if relation.include is defined else relation -}}
{%- endmacro %}
