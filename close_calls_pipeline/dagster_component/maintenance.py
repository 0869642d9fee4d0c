"""The lake's maintenance as a Dagster job and a daily schedule (stopped until switched on, like
the hourly one): `core/lake_maintenance.maintain` on the warehouse resource's connection."""

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    JobDefinition,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from close_calls_pipeline.core import config
from close_calls_pipeline.core.lake_maintenance import maintain

MAINTENANCE_JOB = "close_calls_lake_maintenance"
MAINTENANCE_SCHEDULE = "close_calls_lake_daily_maintenance"


def build_lake_maintenance(
    warehouse_resource_key: str,
    *,
    retention_days: float,
    cron_schedule: str | None = config.DEFAULT_LAKE_MAINTENANCE_CRON_SCHEDULE,
    file_grace_hours: float = config.DEFAULT_LAKE_FILE_GRACE_HOURS,
) -> tuple[JobDefinition, list[ScheduleDefinition]]:
    """The job, and its schedule unless `cron_schedule` is None. The resource under
    `warehouse_resource_key` must have `connect()`, a context manager yielding a connection with
    the lake attached as `close_calls` (its setup holds the run lock, so maintenance never
    overlaps a run)."""

    @op(
        name="close_calls_lake_maintenance",
        required_resource_keys={warehouse_resource_key},
        description="Flush inlined rows, compact small files, expire snapshots older than "
        f"{retention_days:g} days, delete the files no snapshot needs.",
    )
    def lake_maintenance(context: OpExecutionContext):
        warehouse = getattr(context.resources, warehouse_resource_key)
        with warehouse.connect() as con:
            report = maintain(
                con,
                retention_days=retention_days,
                file_grace=timedelta(hours=file_grace_hours),
            )
        context.log.info(report.describe())
        yield Output(None, metadata=report.as_metadata())

    @job(
        name=MAINTENANCE_JOB,
        description="Daily upkeep of the lake: few, large files; snapshots kept for "
        f"{retention_days:g} days of time travel.",
    )
    def maintenance_job():
        lake_maintenance()

    schedules = []
    if cron_schedule:
        schedules.append(
            ScheduleDefinition(
                name=MAINTENANCE_SCHEDULE,
                job=maintenance_job,
                cron_schedule=cron_schedule,
                execution_timezone="UTC",
                default_status=DefaultScheduleStatus.STOPPED,
                description="Lake maintenance (off until switched on in the UI).",
            )
        )
    return maintenance_job, schedules
