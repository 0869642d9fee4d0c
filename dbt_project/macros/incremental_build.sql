{#-
    Incremental builds. The sync numbers every change of a call (close.calls._change_seq). A build
    records, in build_state.builds, the newest number it has built from, and whether every model
    of the project was built: the next build rebuilds only the calls changed since (see
    build_state.changed_calls) and the days those calls left or entered (build_state.changed_days,
    written by fct_calls). A build that builds models first records itself as not complete,
    so one that dies midway (killed, out of memory) leaves that row, and the pipeline's next
    build is a full refresh.
    build_state.request holds the fingerprint the pipeline asked for (core/build_plan.py), which
    it compares with the recorded one to decide when a full refresh is needed.
-#}

{% macro create_build_state() -%}
create schema if not exists build_state;
create table if not exists build_state.builds (
    recorded_at   timestamptz not null,
    after_seq     bigint,
    through_seq   bigint not null,
    complete      boolean not null,
    full_refresh  boolean not null,
    fingerprint   varchar
);
create table if not exists build_state.request (fingerprint varchar);
{#- What one build covers: emptied and written again by each, never created again (in a lake a
    table created stays in the catalog until its snapshots expire, and every statement reads the
    catalog: docs/lake.md). -#}
create table if not exists build_state.current (after_seq bigint, through_seq bigint);
create table if not exists build_state.changed_calls (
    call_id             varchar,
    was_built           boolean,
    previous_call_date  date
);
create table if not exists build_state.changed_days (call_date date)
{%- if flags.FULL_REFRESH %};
{#- The changed calls and days were models of their own before they were build_state tables:
    their last tables would stay, unread, beside the marts. Upgrading makes a full refresh (the
    project's files changed), which drops them. #}
drop table if exists intermediate.int_changed_calls;
drop table if exists intermediate.int_changed_call_dates
{%- endif %}
{%- endmacro %}

{#- The build's one on-run-start hook (a hook is a dbt node, which costs tens of milliseconds
    whatever it does): the state's tables, what this build covers, and its start, in one
    transaction (dbt runs a hook's statements one commit each; in a lake a commit is a catalog
    write: one instead of four took 0.15 s from a 1% build's 2.3 s in dbt). -#}
{% macro start_build() -%}
begin transaction;
{{ create_build_state() }};
{{ record_changed_calls() }};
{{ record_build_start() }};
commit
{%- endmacro %}

{#- The change numbers this build covers: after the last complete build, through the newest; and
    the calls changed since (none on a full refresh, every call when no build completed before),
    with the `call_date` fct_calls had for each before this build, so the daily marts rebuild the
    day a change leaves as well as the day it enters. Read once here, before any model, for the
    incremental models and the tests of the changed rows (a filter on close.calls cost a scan of
    the table in each of them, and in a lake a read of its inlined rows; a model of its own cost
    a node). -#}
{% macro record_changed_calls() -%}
{%- set calls = source('close', 'calls') -%}
{#- fct_calls as the previous build left it, read by name: it is built after this hook. -#}
{%- set previous_fct_calls = adapter.get_relation(
    database=calls.database, schema='analytics', identifier='fct_calls'
) if execute else none -%}
delete from build_state.current;
insert into build_state.current (after_seq, through_seq)
select
    (
        select through_seq from build_state.builds
        where complete order by recorded_at desc limit 1
    ) as after_seq,
    (select coalesce(max(_change_seq), 0) from {{ calls }}) as through_seq;
delete from build_state.changed_calls;
insert into build_state.changed_calls (call_id, was_built, previous_call_date)
with changed as (
    select distinct id as call_id
    from {{ calls }}
    where {{ 'false' if flags.FULL_REFRESH else 'true' }}
      and _change_seq > coalesce((select after_seq from build_state.current), -1)
)
select
    changed.call_id,
    {% if previous_fct_calls is not none -%}
    previous.call_id is not null as was_built,
    previous.call_date as previous_call_date
    {%- else -%}
    false as was_built,
    cast(null as date) as previous_call_date
    {%- endif %}
from changed
{%- if previous_fct_calls is not none %}
left join {{ previous_fct_calls }} as previous on changed.call_id = previous.call_id
{%- endif %}
{%- endmacro %}

{#- Records the build as started (not complete) when it builds any model. -#}
{% macro record_build_start() -%}
{%- set state = namespace(models=0) -%}
{%- for unique_id in (selected_resources if execute else []) if unique_id.startswith('model.') -%}
    {%- set state.models = state.models + 1 -%}
{%- endfor -%}
{%- if state.models -%}
insert into build_state.builds
select now(), after_seq, through_seq, false, {{ 'true' if flags.FULL_REFRESH else 'false' }},
    (select max(fingerprint) from build_state.request)
from build_state.current
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}

{#- Records the build: complete when every model of the project that holds rows (a table, an
    incremental model) was built and no model failed. A view needs no rebuild when its SQL is
    unchanged (the pipeline makes the build full when the project changes), so the pipeline's
    incremental build runs the tables only. A run that built no model (`dbt test`) records
    nothing. -#}
{% macro finish_build(results) -%}
{%- set state = namespace(ran=0, failed=0, tables_built=0) -%}
{%- for result in results if result.node.resource_type == 'model' -%}
    {%- set state.ran = state.ran + 1 -%}
    {%- if result.status != 'success' -%}
        {%- set state.failed = state.failed + 1 -%}
    {%- elif result.node.config.materialized != 'view' -%}
        {%- set state.tables_built = state.tables_built + 1 -%}
    {%- endif -%}
{%- endfor -%}
{%- set tables = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
    | rejectattr('config.materialized', 'equalto', 'view') | list if execute else [] -%}
{%- if state.ran == 0 -%}
select 1
{%- else -%}
insert into build_state.builds
select
    now(),
    after_seq,
    through_seq,
    {{ 'true' if state.failed == 0 and state.tables_built == tables | length else 'false' }},
    {{ 'true' if flags.FULL_REFRESH else 'false' }},
    (select max(fingerprint) from build_state.request)
from build_state.current
{%- endif -%}
{%- endmacro %}

{#- pre_hook of a model with one row per call: on an incremental build, remove the rows of the
    changed calls (a deleted call is not inserted back). -#}
{% macro delete_changed_calls() -%}
{%- if is_incremental() -%}
delete from {{ this }} where {{ in_changed_calls() }}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}

{#- post_hook of fct_calls, in its transaction: the days the daily marts recompute, the
    `call_date`s the changed calls had before this build and have now (a null `call_date` is a
    day of its own). Written here rather than by a model of its own, which cost a dbt node (about
    0.2 s in a file, 0.35 s in a lake) to write a few rows. Empty on a full refresh (no changed
    calls), which builds every day. -#}
{% macro record_changed_days() -%}
delete from build_state.changed_days;
insert into build_state.changed_days (call_date)
select previous_call_date as call_date
from build_state.changed_calls
where was_built
union
select call_date
from {{ this }}
where {{ in_changed_calls() }}
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

{#- The calls changed since the last complete build: build_state.changed_calls, set before any
    model by the build's start hook. -#}
{% macro in_changed_calls() -%}
call_id in (select call_id from build_state.changed_calls)
{%- endmacro %}

{#- `column` is one of build_state.changed_days; a null day (a call with neither activity_at
    nor date_created) is a day of its own. -#}
{% macro in_changed_days(column) -%}
(
    {{ column }} in (
        select call_date from build_state.changed_days where call_date is not null
    )
    or ({{ column }} is null and exists (
        select 1 from build_state.changed_days where call_date is null
    ))
)
{%- endmacro %}

{#- On an incremental build, the tests of a model with `meta: {changed_rows: ...}` check the rows
    that can have changed since the last complete build (which tested the others): `calls`, the
    rows of the calls changed since (build_state.changed_calls, set before any node runs);
    `days`, the days build_state.changed_days lists (the day-grained marts, built after
    fct_calls, which writes it). A full refresh, or a build with no complete build before it,
    tests every row, and so does `dbt test` (run by hand). `dbt compile` renders the
    changed-rows form: the pipeline's incremental build runs the compiled tests itself, in one
    connection after `dbt run` (close_calls_pipeline/core/changed_row_tests.py). Overrides dbt's
    macro of that name, which every generic test reads its model through; a test's own `where`
    config still applies. The pipeline judges the tests that read the same
    `(select * from <model> where (...)) dbt_subquery` in one query that reads those rows once
    (changed_row_tests.rows_read finds this form). -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append(where) -%}{%- endif -%}
    {%- set changed = changed_rows_condition(relation) -%}
    {%- if changed -%}{%- do conditions.append(changed) -%}{%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where (' ~ conditions | join(') and (') ~ ')) dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro changed_rows_condition(relation) -%}
    {%- if flags.FULL_REFRESH or flags.WHICH not in ('build', 'compile') or not execute
        or relation is string
        or relation.identifier is none -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set kinds = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model'
        and node.alias == relation.identifier and node.schema == relation.schema -%}
        {%- do kinds.append(node.config.meta.get('changed_rows')) -%}
    {%- endfor -%}
    {%- set no_build_before = '(select after_seq from build_state.current) is null' -%}
    {%- if kinds == ['calls'] -%}
        {{- return(in_changed_calls()) -}}
    {%- elif kinds == ['days'] -%}
        {{- return(no_build_before ~ ' or ' ~ in_changed_days('call_date')) -}}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}
