"""`close-calls docs`: the dbt docs site of the bundled project, against the project's warehouse.

The site is built into the project folder (beside dbt's other artefacts) as well as a single
`static_index.html` with the manifest and catalog inside it, which a browser opens from disk
(the plain `index.html` fetches `manifest.json`, which browsers refuse for `file://` pages).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from close_calls_pipeline.cli.project import settings_of
from close_calls_pipeline.core import config
from close_calls_pipeline.core.dbt_launcher import dbt_vars, project_args, real_dbt_executable

STATIC_SITE = "static_index.html"  # what `dbt docs generate --static` writes


def docs_target_path(project_dir: Path) -> Path:
    return config.dbt_target_path(project_dir) / "docs"


def dbt_docs(project_dir: Path, port: int, serve: bool) -> int:
    """`dbt docs generate --static` against the project's warehouse, the lake when one is set
    (then `dbt docs serve`)."""
    settings = settings_of(project_dir)
    if settings.lake is None and not settings.duckdb_path.exists():
        print(
            f"close-calls docs: error: no warehouse at {settings.duckdb_path} yet: "
            "run `close-calls run` first",
            file=sys.stderr,
        )
        return 1
    target = docs_target_path(project_dir)
    common = project_args(
        target,
        dbt_vars(
            str(settings.duckdb_path),
            settings.dbt_memory_limit,
            settings.reporting_timezone,
            lake=settings.lake,
        ),
    )
    dbt = [real_dbt_executable(), "--no-send-anonymous-usage-stats", "docs"]
    done = subprocess.call([*dbt, "generate", "--static", *common], cwd=project_dir)
    if done:
        return done
    print(f"dbt docs site (opens from disk): {target / STATIC_SITE}", flush=True)
    if not serve:
        return 0
    try:
        return subprocess.call([*dbt, "serve", "--port", str(port), *common], cwd=project_dir)
    except KeyboardInterrupt:
        return 0
