{#-
    Incremental builds. The sync numbers every change of a call (close.calls._change_seq). A build
    records, in build_state.builds, the newest number it has built from, and whether every model
    of the project was built: the next build rebuilds only the calls changed since (see
    int_changed_calls) and the days those calls left or entered (int_changed_call_dates).
    build_state.request holds the fingerprint the pipeline asked for (core/build_plan.py), which
    it compares with the recorded one to decide when a full refresh is needed.
-#}

{% macro create_build_state() -%}
create schema if not exists build_state;
create table if not exists build_state.builds (
    finished_at   timestamptz not null,
    after_seq     bigint,
    through_seq   bigint not null,
    complete      boolean not null,
    full_refresh  boolean not null,
    fingerprint   varchar
);
create table if not exists build_state.request (fingerprint varchar)
{%- endmacro %}

{#- The change numbers this build covers: after the last complete build, through the newest. -#}
{% macro start_build() -%}
create or replace table build_state.current as
select
    (
        select through_seq from build_state.builds
        where complete order by finished_at desc limit 1
    ) as after_seq,
    (select coalesce(max(_change_seq), 0) from {{ source('close', 'calls') }}) as through_seq
{%- endmacro %}

{#- Records the build: complete when every model of the project was built. A run that built no
    model (`dbt test`) records nothing. -#}
{% macro finish_build(results) -%}
{%- set state = namespace(ran=0, succeeded=0) -%}
{%- for result in results if result.node.resource_type == 'model' -%}
    {%- set state.ran = state.ran + 1 -%}
    {%- if result.status == 'success' -%}{%- set state.succeeded = state.succeeded + 1 -%}{%- endif -%}
{%- endfor -%}
{%- set models = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') | list
    if execute else [] -%}
{%- if state.ran == 0 -%}
select 1
{%- else -%}
insert into build_state.builds
select
    now(),
    after_seq,
    through_seq,
    {{ 'true' if state.succeeded == models | length else 'false' }},
    {{ 'true' if flags.FULL_REFRESH else 'false' }},
    (select max(fingerprint) from build_state.request)
from build_state.current
{%- endif -%}
{%- endmacro %}

{#- pre_hook of a model with one row per call: on an incremental build, remove the rows of the
    changed calls (a deleted call is not inserted back). -#}
{% macro delete_changed_calls() -%}
{%- if is_incremental() -%}
delete from {{ this }} where call_id in (select call_id from {{ ref('int_changed_calls') }})
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}

{#- pre_hook of a model with rows per call_date: on an incremental build, remove the rows of the
    days the changed calls left or entered (they are computed again from fct_calls). -#}
{% macro delete_changed_days() -%}
{%- if is_incremental() -%}
delete from {{ this }} where {{ in_changed_days('call_date') }}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}

{#- `column` is one of int_changed_call_dates's days; a null day (a call with neither activity_at
    nor date_created) is a day of its own. -#}
{% macro in_changed_days(column) -%}
(
    {{ column }} in (
        select call_date from {{ ref('int_changed_call_dates') }} where call_date is not null
    )
    or ({{ column }} is null and exists (
        select 1 from {{ ref('int_changed_call_dates') }} where call_date is null
    ))
)
{%- endmacro %}
