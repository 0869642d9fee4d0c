"""The dbt resource does not start dbt once more per run to learn its version, nor load dbt's
adapter into the run's process (dagster_component/dbt.py: CloseDbtCliResource)."""

from functools import cached_property

import dagster_dbt.core.resource as dagster_dbt_resource
import pytest
from dagster_dbt import DbtCliResource
from dbt.version import __version__ as dbt_core_version

from close_calls_pipeline.core import config
from close_calls_pipeline.dagster_component.dbt import dbt_project, dbt_resource


def test_the_dbt_version_comes_from_the_installed_dbt_core_without_a_subprocess(
    tmp_path, monkeypatch
):
    # dagster-dbt's own answer is `dbt --version` in a subprocess: it must not run
    def no_subprocess(*args, **kwargs):
        pytest.fail(f"a subprocess was started: {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", no_subprocess)
    resource = dbt_resource(dbt_project(config.DBT_PROJECT_DIR, tmp_path / "target"))
    assert str(resource._cli_version) == dbt_core_version
    assert resource._initialize_dbt_core_adapter(["run"]) is None
    # what the overrides replace is still there: a dagster-dbt that renamed them would be noticed
    assert isinstance(DbtCliResource.__dict__["_cli_version"], cached_property)
    assert callable(DbtCliResource.__dict__["_initialize_dbt_core_adapter"])
