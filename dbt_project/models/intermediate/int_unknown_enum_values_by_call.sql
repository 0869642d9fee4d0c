-- The values of enumeration columns that are not in var `known_enum_values` (dbt_project.yml),
-- one row per call, column and value (a call whose utterances repeat a value has one row).
-- Incremental like fct_calls: a build replaces the rows of the calls changed since the last one
-- (build_state.changed_calls), so it reads the changed calls only; analytics.unknown_enum_values
-- counts the calls of each value from it.
{{ config(
    materialized='incremental',
    pre_hook="{{ delete_changed_calls() }}",
    meta={"changed_rows": "calls"},
) }}
{%- set known_enum_values = var('known_enum_values') %}

{# One scan of each model for all its columns (a row per call, column and value), not one per
    column: an incremental build reads the changed calls' rows once. -#}
select distinct call_id, column_name, value
from (
    {%- for model_name, columns in known_enum_values.items() %}
    {%- if not loop.first %}

    union all
    {%- endif %}

    select call_id, observed.column_name, observed.value
    from (
        select
            call_id,
            unnest([
                {%- for column_name in columns %}
                {'column_name': '{{ column_name }}', 'value': cast({{ adapter.quote(column_name) }} as varchar)}{{ ',' if not loop.last }}
                {%- endfor %}
            ]) as observed
        from {{ ref(model_name) }}
        {%- if is_incremental() %}
        where {{ in_changed_calls() }}
        {%- endif %}
    )
    where observed.value is not null and (
        {%- for column_name, known_values in columns.items() %}
        {{ 'or ' if not loop.first }}(observed.column_name = '{{ column_name }}' and observed.value not in ({{ sql_string_list(known_values) }}))
        {%- endfor %}
    )
    {%- endfor %}

) as unknown_values
