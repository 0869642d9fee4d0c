"""Names of the Dagster graph: asset keys, groups, jobs, schedules, the DuckDB pool."""

from dagster import AssetKey

INGESTION_GROUP = "close_ingestion"
ANALYTICS_GROUP = "analytics"
WAREHOUSE_POOL = "close_calls_duckdb"  # every step that opens the DuckDB file

CALLS_KEY = AssetKey(["close", "calls"])
UTTERANCES_KEY = AssetKey(["close", "call_transcript_utterances"])
OUTCOMES_KEY = AssetKey(["close", "outcomes"])
USERS_KEY = AssetKey(["close", "users"])
INGESTION_KEYS = (CALLS_KEY, UTTERANCES_KEY, OUTCOMES_KEY, USERS_KEY)

PIPELINE_JOB = "close_calls_pipeline"
RECONCILE_JOB = "close_calls_full_reconcile"
HOURLY_SCHEDULE = "close_calls_hourly"
RECONCILE_SCHEDULE = "close_calls_weekly_reconcile"
REPORT_KEY = AssetKey(["analytics", "call_report"])
READONLY_COPY_KEY = AssetKey(["close", "readonly_copy"])
