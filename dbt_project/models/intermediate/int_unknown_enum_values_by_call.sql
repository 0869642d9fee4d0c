-- The values of enumeration columns that are not in var `known_enum_values` (dbt_project.yml),
-- one row per call, column and value (a call whose utterances repeat a value has one row).
-- Incremental like fct_calls: a build replaces the rows of the calls changed since the last one
-- (int_changed_calls), so it reads the changed calls only; analytics.unknown_enum_values counts
-- the calls of each value from it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_changed_calls() }}",
    meta={"changed_rows": "calls"},
) }}
-- depends_on: {{ ref('int_changed_calls') }}
{%- set known_enum_values = var('known_enum_values') %}
{%- set state = namespace(first=true) %}

with observed as (

    {%- for model_name, columns in known_enum_values.items() %}
    {%- for column_name, known_values in columns.items() %}
    {%- if not state.first %}

    union all
    {%- endif %}
    {%- set state.first = false %}

    select
        call_id,
        '{{ column_name }}' as column_name,
        cast({{ adapter.quote(column_name) }} as varchar) as value
    from {{ ref(model_name) }}
    where {{ adapter.quote(column_name) }} is not null
      and cast({{ adapter.quote(column_name) }} as varchar) not in ({{ sql_string_list(known_values) }})
      {%- if is_incremental() %}
      and call_id in (select call_id from {{ ref('int_changed_calls') }})
      {%- endif %}
    {%- endfor %}
    {%- endfor %}

)

select distinct call_id, column_name, value
from observed
