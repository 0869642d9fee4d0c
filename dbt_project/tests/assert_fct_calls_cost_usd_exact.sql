-- Singular data test: cost_usd is exactly cost_cents / 100 (decimal arithmetic, no float drift).
select call_id, cost_cents, cost_usd
from {{ ref('fct_calls') }}
where cost_usd * 100 <> cost_cents
   or (cost_usd is null) <> (cost_cents is null)
