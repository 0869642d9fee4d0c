-- Values of enumeration columns that are not in var `known_enum_values` (dbt_project.yml), with
-- the number of existing calls carrying each: one row per (column_name, value). Empty when every
-- value is known. Read by the run summary and a Dagster check to report values Close started
-- sending; the accepted_values tests on the same lists only warn, so nothing stops building.
-- A view over int_unknown_enum_values_by_call (a row per call with an unknown value: few).
{{ config(materialized='view') }}
select
    column_name,
    value,
    count(*) as calls
from {{ ref('int_unknown_enum_values_by_call') }}
group by column_name, value
order by column_name, value
