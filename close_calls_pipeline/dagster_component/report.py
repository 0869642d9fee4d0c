"""`analytics/call_report`: the offline HTML call report, rewritten after every dbt build."""

from dagster import AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from close_calls_pipeline.dagster_component.keys import (
    ANALYTICS_GROUP,
    REPORT_KEY,
    WAREHOUSE_POOL,
)
from close_calls_pipeline.dagster_component.resources import WarehouseResource
from close_calls_pipeline.report import REPORT_MARTS, EmptyPeriodError, write_report


def build_report_asset() -> AssetsDefinition:
    @asset(
        key=REPORT_KEY,
        deps=[AssetKey(["analytics", mart]) for mart in REPORT_MARTS],
        group_name=ANALYTICS_GROUP,
        kinds={"html"},
        pool=WAREHOUSE_POOL,
        description="The call-analytics report: one self-contained HTML file (opens from disk "
        "with no network) for the 30 whole days ending yesterday, beside the warehouse file.",
    )
    def call_report(duckdb_warehouse: WarehouseResource) -> MaterializeResult:
        try:
            report = write_report(duckdb_warehouse.path)
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
