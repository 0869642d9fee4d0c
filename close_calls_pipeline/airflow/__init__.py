"""The Close calls pipeline as an Airflow 3 DAG (the `[airflow]` extra): see docs/airflow.md.

    from close_calls_pipeline.airflow import build_dag
    dag = build_dag()

`build_dag` is imported on first use, so `settings` and `tasks` load without Airflow (importing
Airflow sets up its home folder and configuration).
"""

from typing import Any

__all__ = ["build_dag"]


def __getattr__(name: str) -> Any:
    if name == "build_dag":
        from close_calls_pipeline.airflow.dag import build_dag

        return build_dag
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
