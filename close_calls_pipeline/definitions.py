"""The code location: the package's own `defs/` folder (one `CloseCallsComponent`), rooted at the
working directory, which is the project folder: `dg dev` / `dg launch` in this repository (its
[tool.dg] in pyproject.toml), `close-calls ui` in a folder that is not a `dg` project, and
`dagster asset materialize -m close_calls_pipeline.definitions`. Configuration comes from the
environment through `defs/close_calls/defs.yaml`.
"""

from pathlib import Path

import dagster as dg

from close_calls_pipeline.dagster_component.without_dbt_core import (
    import_dagster_dbt_without_dbt_core,
)

import_dagster_dbt_without_dbt_core()  # this code location loads no dbt project but the package's
from close_calls_pipeline.dagster_component.project import packaged_tree  # noqa: E402


@dg.definitions
def defs() -> dg.Definitions:
    return packaged_tree(Path.cwd()).build_defs()
