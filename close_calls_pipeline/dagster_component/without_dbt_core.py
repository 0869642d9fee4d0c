"""dagster-dbt imported without dbt-core's Python modules, in the processes that load only this
project: a second off the start of every run.

dagster-dbt imports dbt-core's Python modules as it is imported (1.1 s), to type the results it
reads and to evaluate dbt selections. It also works without them, as it does beside dbt Fusion:
results are read as strings, and the default selection is every node of the manifest. This
project selects every node and runs dbt as a process of its own, so it needs neither. The
processes that load only this project (every `close-calls` command, and the code location of
`definitions.py` that `close-calls ui` serves) import dagster-dbt that way; a `dg` project that
loads the component beside dbt assets of its own imports it as usual, from its own definitions.
`tests/test_dbt_resource.py` checks that both ways give the same assets and checks.
"""

import sys


def import_dagster_dbt_without_dbt_core() -> None:
    """Import dagster-dbt with `dbt.version` hidden (its test for dbt-core), unless it is already
    imported; later imports of dbt-core's modules work as usual."""
    if "dagster_dbt" in sys.modules:
        return
    hidden = sys.modules.pop("dbt.version", None)
    sys.modules["dbt.version"] = None  # `import dbt.version` raises ImportError
    try:
        import dagster_dbt  # noqa: F401
    finally:
        del sys.modules["dbt.version"]
        if hidden is not None:
            sys.modules["dbt.version"] = hidden
