"""`analytics/call_report`: the offline HTML call report, rewritten after every dbt build (and
kept as it is when the marts did not change and it was written today: its period is whole days
ending yesterday, so a new day needs a new report)."""

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from close_calls_pipeline.core import build_plan
from close_calls_pipeline.dagster_component.keys import (
    ANALYTICS_GROUP,
    REPORT_KEY,
    WAREHOUSE_POOL,
)
from close_calls_pipeline.dagster_component.resources import WarehouseResource
from close_calls_pipeline.report import (
    REPORT_MARTS,
    EmptyPeriodError,
    default_report_path,
    write_report,
)


def build_report_asset(reporting_timezone: str) -> AssetsDefinition:
    """The report asset; its weekday x hour is in `reporting_timezone`, as dbt's `call_date`."""

    @multi_asset(
        name="call_report",  # the step's name, in the style of the others
        specs=[
            AssetSpec(
                REPORT_KEY,
                deps=[AssetKey(["analytics", mart]) for mart in REPORT_MARTS],
                group_name=ANALYTICS_GROUP,
                kinds={"html"},
                description="The call-analytics report: one self-contained HTML file (opens from "
                "disk with no network) for the 30 whole days ending yesterday, beside the warehouse file.",
            )
        ],
        pool=WAREHOUSE_POOL,
    )
    def call_report(duckdb_warehouse: WarehouseResource) -> MaterializeResult:
        path = default_report_path(duckdb_warehouse.path)
        with duckdb_warehouse.connect() as con:
            unchanged = build_plan.unchanged_reason(con)
        if unchanged and _written_today(path, reporting_timezone):
            return MaterializeResult(
                metadata={
                    "written": False,
                    "path": MetadataValue.path(str(path)),
                    "reason": unchanged,
                }  # fmt: skip
            )
        try:
            report = write_report(
                duckdb_warehouse.path,
                timezone=reporting_timezone,
                file_mode=duckdb_warehouse.file_mode,
                lake=duckdb_warehouse.lake,
            )
        except EmptyPeriodError as error:
            # A warehouse without calls yet is not a failure of the run: say why there is no file.
            return MaterializeResult(metadata={"written": False, "reason": str(error)})
        figures = {
            f"headline/{name}": value for name, value in report.figures.items() if value is not None
        }
        return MaterializeResult(
            metadata={
                "written": True,
                "path": MetadataValue.path(str(report.path)),
                "period": f"{report.period.start} to {report.period.end}",
                "summary": MetadataValue.md(report.markdown_summary),
                "size_bytes": report.size_bytes,
                **figures,
            }
        )

    return call_report


def _written_today(path, timezone: str) -> bool:
    """Whether the file exists and was written today in `timezone` (the report's period ends
    yesterday there)."""
    if not path.exists():
        return False
    zone = ZoneInfo(timezone)
    return datetime.fromtimestamp(path.stat().st_mtime, zone).date() == datetime.now(zone).date()
