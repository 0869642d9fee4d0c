-- Singular data test: share_of_calls sums to 1 over call_metrics_by_disposition (an empty mart passes).
select sum(share_of_calls) as total_share
from {{ ref('call_metrics_by_disposition') }}
having count(*) > 0 and abs(sum(share_of_calls) - 1) > 1e-9
