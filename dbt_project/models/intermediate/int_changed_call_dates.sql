-- The call_dates an incremental build recomputes in the daily marts: the days the changed calls
-- had before this build and the days they have now (a null call_date is a day of its own).
{{ config(materialized='table') }}

select previous_call_date as call_date
from build_state.changed_calls  -- set before any model: macros/incremental_build.sql
where was_built

union

select call_date
from {{ ref('fct_calls') }}
where call_id in (select call_id from build_state.changed_calls)
