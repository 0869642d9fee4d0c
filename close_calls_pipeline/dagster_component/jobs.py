"""Jobs and schedules: the incremental pipeline (hourly) and the full reconcile (weekly)."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
)

from close_calls_pipeline.dagster_component.keys import (
    HOURLY_SCHEDULE,
    PIPELINE_JOB,
    RECONCILE_JOB,
    RECONCILE_SCHEDULE,
)


def jobs_and_schedules(
    cron_schedule: str | None, reconcile_cron_schedule: str | None
) -> tuple[list, list[ScheduleDefinition]]:
    """Both jobs run every asset in dependency order (ingestion, then `dbt build`)."""
    pipeline_job = define_asset_job(
        PIPELINE_JOB,
        selection=AssetSelection.all(),
        description="Incremental Close sync (Event Log since the high-water mark), outcomes and "
        "users, then `dbt build` of the analytics marts.",
    )
    reconcile_job = define_asset_job(
        RECONCILE_JOB,
        selection=AssetSelection.all(),
        config={"ops": {"close_calls": {"config": {"reconcile": True}}}},
        description="Full reconcile: walk every call by date_created, repair what the Event Log "
        "missed (late events), soft-delete the calls Close no longer has, then `dbt build`.",
    )
    schedules = []
    if cron_schedule:
        schedules.append(
            ScheduleDefinition(
                name=HOURLY_SCHEDULE,
                job=pipeline_job,
                cron_schedule=cron_schedule,
                execution_timezone="UTC",
                default_status=DefaultScheduleStatus.STOPPED,
                description="Incremental sync, then dbt build (off until switched on in the UI).",
            )
        )
    if reconcile_cron_schedule:
        schedules.append(
            ScheduleDefinition(
                name=RECONCILE_SCHEDULE,
                job=reconcile_job,
                cron_schedule=reconcile_cron_schedule,
                execution_timezone="UTC",
                default_status=DefaultScheduleStatus.RUNNING,
                description="Full reconcile walk that catches events Close published too late for "
                "the incremental sync (on by default; costs about one request per 100 calls).",
            )
        )
    return [pipeline_job, reconcile_job], schedules
