-- The calls changed (inserted, replaced or soft-deleted by the sync: close.calls._change_seq)
-- since the last complete build, with the call_date fct_calls had for each before this build, so
-- the daily marts rebuild the day a change leaves as well as the day it enters. Empty on a full
-- refresh and on a first build, which build everything.
{{ config(materialized='table') }}

{#- fct_calls as the previous build left it: read by name, not ref() (fct_calls is built from this
    model). Its schema is the marts' (dbt_project.yml). -#}
{%- set previous_fct_calls = adapter.get_relation(
    database=this.database, schema='analytics', identifier='fct_calls'
) if execute else none %}
{%- set incremental = previous_fct_calls is not none and not flags.FULL_REFRESH %}

with changed as (

    {#- set by the build's on-run-start hook (macros/incremental_build.sql): every call when no
        build completed before, which is a full build here -#}
    select call_id
    from build_state.changed_calls
    where {{ 'true' if incremental else 'false' }}

)

select
    changed.call_id,
    {% if incremental -%}
    previous.call_id is not null as was_built,
    previous.call_date as previous_call_date
    {%- else -%}
    false as was_built,
    cast(null as date) as previous_call_date
    {%- endif %}

from changed
{%- if incremental %}
left join {{ previous_fct_calls }} as previous on changed.call_id = previous.call_id
{%- endif %}
