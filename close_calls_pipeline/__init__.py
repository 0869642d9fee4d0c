"""close-calls-pipeline: Close CRM calls into DuckDB, modelled with dbt, orchestrated by Dagster.

    core/               orchestrator-free: Close client, typing, warehouse, sync, settings
    sandbox/            a fake Close API over HTTP, used when no API key is set
    dagster_component/  the Dagster Component and the assets, checks, jobs it yields
    defs/               the packaged `dg` defs folder (one CloseCallsComponent)
    report/             the offline HTML call report
    airflow/            the same pipeline as an Airflow 3 DAG (the `[airflow]` extra)
    cli/                `close-calls run | erase | start-over | maintain | ui | docs | report |
                        sandbox | bench`
    bench/              benchmarks, outside the product's import graph

`close_calls_pipeline.CloseCallsComponent` is imported lazily, so that importing the core does
not import Dagster.
"""

from typing import Any

__all__ = ["CloseCallsComponent"]


def __getattr__(name: str) -> Any:
    if name == "CloseCallsComponent":
        from close_calls_pipeline.dagster_component.component import CloseCallsComponent

        return CloseCallsComponent
    raise AttributeError(f"module 'close_calls_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])  # so that dg's component registry finds it
