-- Values of enumeration columns that are not in var `known_enum_values` (dbt_project.yml), with
-- the number of existing calls carrying each: one row per (column_name, value). Empty when every
-- value is known. Read by the run summary and a Dagster check to report values Close started
-- sending; the accepted_values tests on the same lists only warn, so nothing stops building.
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
        '{{ column_name }}' as column_name,
        cast({{ adapter.quote(column_name) }} as varchar) as value,
        call_id
    from {{ ref(model_name) }}
    where {{ adapter.quote(column_name) }} is not null
      and cast({{ adapter.quote(column_name) }} as varchar) not in ({{ sql_string_list(known_values) }})
    {%- endfor %}
    {%- endfor %}

)

select
    column_name,
    value,
    count(distinct call_id) as calls
from observed
group by column_name, value
order by column_name, value
