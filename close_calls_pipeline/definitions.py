"""The code location: everything in the `defs/` folder (one `CloseCallsComponent`).

Loaded by `dg dev` / `dg launch` ([tool.dg] in pyproject.toml), by `workspace.yaml`
(`dagster dev`), by `dagster asset materialize -m close_calls_pipeline.definitions`, and by
`close-calls run`. Configuration comes from the environment through `defs/close_calls/defs.yaml`.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
