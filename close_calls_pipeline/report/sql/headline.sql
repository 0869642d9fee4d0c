-- Headline sums for the period ($start..$end) and the previous period ($prev_start..$prev_end),
-- from the daily mart (both ranges inclusive). Ratios are derived from these sums in Python.
select
    coalesce(sum(calls) filter (where call_date between $start and $end), 0) as calls,
    coalesce(sum(answered_calls) filter (where call_date between $start and $end), 0)
        as answered_calls,
    coalesce(sum(total_duration_seconds) filter (where call_date between $start and $end), 0)
        as total_duration_seconds,
    coalesce(sum(total_cost_usd) filter (where call_date between $start and $end), 0)
        as total_cost_usd,
    coalesce(sum(calls) filter (where call_date between $prev_start and $prev_end), 0)
        as prev_calls,
    coalesce(sum(answered_calls) filter (where call_date between $prev_start and $prev_end), 0)
        as prev_answered_calls,
    coalesce(
        sum(total_duration_seconds) filter (where call_date between $prev_start and $prev_end), 0
    ) as prev_total_duration_seconds,
    coalesce(sum(total_cost_usd) filter (where call_date between $prev_start and $prev_end), 0)
        as prev_total_cost_usd
from analytics.call_metrics_daily
where call_date between $prev_start and $end
