"""One settings model (`core/settings.py`) and what is derived from it.

* `.env.example` and `docs/configuration.md` are what the model generates;
* the component's attributes are the model's fields (names, defaults, descriptions), and the
  `defs.yaml` `dg scaffold` writes resolves, uncommented, to valid settings;
* templates: an unset variable means the default, a literal null means "none";
* `settings_from_environment` (the Airflow DAG's) reads every field's variable, empty meaning
  the default, overrides winning, bad values and unknown names refused;
* `reporting_timezone` is passed to dbt, not read from its project;
* the freshness policy is a setting, off by default, and the windows the Dagster UI shows are
  the ones the code applies.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from close_calls_pipeline.core import config
from close_calls_pipeline.core.dbt_launcher import dbt_vars
from close_calls_pipeline.core.settings import (
    GENERATED_FILES,
    PipelineSettings,
    default_of,
    scaffold_attributes,
    settings_from_environment,
)
from close_calls_pipeline.dagster_component.component import (
    CloseCallsComponent,
    build_definitions,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CALLS_KEY = AssetKey(["close", "calls"])


@pytest.mark.parametrize("relative", sorted(GENERATED_FILES, key=str), ids=str)
def test_generated_files_are_what_the_model_generates(relative):
    """Regenerate with `python -m close_calls_pipeline.core.settings` after changing the model."""
    assert (REPO_ROOT / relative).read_text() == GENERATED_FILES[relative]()


def test_the_configuration_doc_and_env_example_name_every_setting():
    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    env_example = (REPO_ROOT / ".env.example").read_text()
    for name, info in PipelineSettings.model_fields.items():
        assert f"| `{name}` |" in doc, name
        variable = (info.json_schema_extra or {}).get("env")
        if variable:
            assert f"# {variable}=" in env_example


def test_the_component_attributes_are_the_settings_fields():
    attributes = {f.name: f for f in dataclasses.fields(CloseCallsComponent)}
    assert list(attributes) == list(PipelineSettings.model_fields)
    schema = CloseCallsComponent.model().model_json_schema()["properties"]
    for name, info in PipelineSettings.model_fields.items():
        assert getattr(CloseCallsComponent(), name) == default_of(info), name
        assert schema[name]["description"] == info.description, name
    assert CloseCallsComponent().settings(REPO_ROOT) == PipelineSettings().resolved(REPO_ROOT)


def test_the_scaffolded_attributes_uncommented_are_valid_settings():
    from_env, commented = scaffold_attributes()
    assert set(from_env) == {
        "duckdb_path", "api_key", "base_url", "lock_wait_seconds",
        "lake_catalog", "lake_data_path", "lake_snapshot_retention_days",
    }  # fmt: skip
    assert from_env["api_key"] == "{{ env.CLOSE_API_KEY }}"
    settings_lines = [
        line.removeprefix("  # ")
        for line in commented.splitlines()
        if line.startswith("  # ")
        and line.removeprefix("  # ").split(":")[0] in PipelineSettings.model_fields
    ]
    named = {line.split(":")[0] for line in settings_lines}
    assert named == set(PipelineSettings.model_fields) - set(from_env)
    component = CloseCallsComponent.resolve_from_yaml("\n".join(settings_lines))
    settings = component.settings(REPO_ROOT)
    assert settings.backfill_start == "2024-01-01"
    assert settings.reporting_timezone == "America/New_York"
    assert settings.extra_call_fields == ["custom.cf_xxx"]
    assert (settings.freshness_fail_after_hours, settings.freshness_warn_after_hours) == (2, 1)


def test_an_unset_variable_means_the_default_and_null_means_none(monkeypatch):
    monkeypatch.delenv("CLOSE_CALLS_TEST_UNSET", raising=False)
    component = CloseCallsComponent.resolve_from_yaml(
        textwrap.dedent(
            """\
            lock_wait_seconds: "{{ env.CLOSE_CALLS_TEST_UNSET }}"
            workers: "{{ env.CLOSE_CALLS_TEST_UNSET }}"
            base_url: "{{ env.CLOSE_CALLS_TEST_UNSET }}"
            cron_schedule: null
            """
        )
    )
    settings = component.settings(REPO_ROOT)
    assert settings.lock_wait_seconds == config.DEFAULT_LOCK_WAIT_SECONDS
    assert settings.workers == config.DEFAULT_WORKERS
    assert settings.base_url is None  # unset: Close's own URL, with a key (none without)
    assert settings.cron_schedule is None
    monkeypatch.setenv("CLOSE_CALLS_TEST_UNSET", "2.5")
    assert CloseCallsComponent.resolve_from_yaml(
        'lock_wait_seconds: "{{ env.CLOSE_CALLS_TEST_UNSET }}"'
    ).settings(REPO_ROOT).lock_wait_seconds == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"reporting_timezone": "Mars/Olympus"}, "reporting_timezone"),
        ({"event_overlap_minutes": -1}, "event_overlap_minutes"),
        ({"event_overlap_minutes": 7 * 24 * 60 + 1}, "event_overlap_minutes"),
        ({"workers": 0}, "workers"),
        ({"lock_wait_seconds": "soon"}, "lock_wait_seconds"),
        ({"backfill_start": "2999-01-01"}, "backfill_start"),
        ({"freshness_fail_after_hours": 36}, "freshness_fail_after_hours"),
        ({"freshness_fail_after_hours": 2, "freshness_warn_after_hours": 2}, "freshness_warn"),
        ({"freshness_warn_after_hours": 1}, "freshness_warn"),
    ],
)
def test_bad_values_are_refused_at_load_naming_the_setting(attributes, field):
    with pytest.raises(ValueError, match=field):
        CloseCallsComponent(**attributes)


def test_reporting_timezone_is_a_dbt_var_and_not_the_dbt_projects():
    """The run itself: tests/test_dagster.py (call_date and the report in the zone)."""
    settings = CloseCallsComponent(
        reporting_timezone="Europe/Berlin", event_overlap_minutes=90
    ).settings(REPO_ROOT)
    passed = json.loads(dbt_vars(str(settings.duckdb_path), "1GB", settings.reporting_timezone))
    assert passed["reporting_timezone"] == "Europe/Berlin"
    project = yaml.safe_load((REPO_ROOT / "dbt_project" / "dbt_project.yml").read_text())
    assert "reporting_timezone" not in project["vars"], "the setting decides, not the dbt project"
    assert settings.event_overlap_minutes == 90


# --- freshness -----------------------------------------------------------------------------------


def dayjs_humanize(seconds: float) -> str:
    """What the Dagster UI shows for a freshness window: dayjs's `duration(...).humanize()`
    (relativeTime's default thresholds), which rounds."""
    minutes, hours, days = seconds / 60, seconds / 3600, seconds / 86400
    if seconds < 45:
        return "a few seconds"
    if seconds < 90:
        return "a minute"
    if minutes < 45:
        return f"{round(minutes)} minutes"
    if minutes < 90:
        return "an hour"
    if hours < 22:
        return f"{round(hours)} hours"
    if hours < 36:
        return "a day"
    if days < 26:
        return f"{round(days)} days"
    return "a month or more"


def test_dayjs_humanize_rounds_ninety_minutes_to_two_hours():
    """The UI's "Warns if more than 2 hours" for a warn window of 90 minutes."""
    assert dayjs_humanize(90 * 60) == "2 hours"


def calls_freshness(**attributes):
    settings = CloseCallsComponent(dbt_marts=False, **attributes).settings(REPO_ROOT)
    specs = {spec.key: spec for spec in build_definitions(settings).resolve_all_asset_specs()}
    return specs[CALLS_KEY].freshness_policy


def test_freshness_is_off_by_default_while_the_hourly_schedule_starts_stopped():
    assert calls_freshness() is None


@pytest.mark.parametrize(
    ("fail_hours", "warn_hours", "fail_text", "warn_text"),
    [(2, 1, "2 hours", "an hour"), (3, None, "3 hours", None), (48, 24, "2 days", "a day")],
)
def test_the_freshness_the_ui_shows_is_the_one_the_code_applies(
    fail_hours, warn_hours, fail_text, warn_text
):
    policy = calls_freshness(
        freshness_fail_after_hours=fail_hours, freshness_warn_after_hours=warn_hours
    )
    fail = policy.fail_window.to_timedelta()
    assert fail == timedelta(hours=fail_hours)
    assert dayjs_humanize(fail.total_seconds()) == fail_text
    if warn_hours is None:
        assert policy.warn_window is None
    else:
        warn = policy.warn_window.to_timedelta()
        assert warn == timedelta(hours=warn_hours)
        assert dayjs_humanize(warn.total_seconds()) == warn_text


def exact_text(hours: int) -> str:
    if hours == 1:
        return "an hour"
    if hours % 24 == 0:
        return "a day" if hours == 24 else f"{hours // 24} days"
    return f"{hours} hours"


def test_every_accepted_freshness_shows_exactly_in_the_ui_and_others_are_refused():
    accepted = []
    for hours in range(1, 24 * 30):
        try:
            PipelineSettings(freshness_fail_after_hours=hours)
        except ValueError:
            assert dayjs_humanize(hours * 3600) != exact_text(hours), hours
            continue
        accepted.append(hours)
        assert dayjs_humanize(hours * 3600) == exact_text(hours), hours
    assert {1, 2, 21, 24, 48, 168} <= set(accepted)


def test_settings_from_environment_reads_each_fields_variable():
    environ = {
        "CLOSE_CALLS_DUCKDB": " warehouse/calls.duckdb ",
        "CLOSE_API_BASE_URL": "http://127.0.0.1:9/api/v1",
        "CLOSE_CALLS_LOCK_WAIT_SECONDS": "7",
        "CLOSE_API_KEY": "api_from_the_environment",
        "CLOSE_CALLS_WORKERS": "99",  # no field declares it: not read
    }
    settings = settings_from_environment(environ)
    assert settings.duckdb_path == Path("warehouse/calls.duckdb")
    assert settings.base_url == "http://127.0.0.1:9/api/v1"
    assert settings.lock_wait_seconds == 7.0
    assert settings.api_key == "api_from_the_environment"
    assert settings.workers == config.DEFAULT_WORKERS
    assert "api_from_the_environment" not in repr(settings)


def test_settings_from_environment_empty_means_the_default():
    blank = {"CLOSE_CALLS_DUCKDB": "", "CLOSE_API_KEY": "  ", "CLOSE_CALLS_LOCK_WAIT_SECONDS": ""}
    assert settings_from_environment(blank) == PipelineSettings()
    assert settings_from_environment({}) == PipelineSettings()


def test_settings_from_environment_overrides_win():
    environ = {"CLOSE_CALLS_LOCK_WAIT_SECONDS": "soon", "CLOSE_API_KEY": "api_x"}
    settings = settings_from_environment(environ, lock_wait_seconds=0, api_key=None, workers=3)
    assert (settings.lock_wait_seconds, settings.api_key, settings.workers) == (0.0, None, 3)


def test_settings_from_environment_refuses_bad_values_and_unknown_names():
    with pytest.raises(ValueError, match="CLOSE_CALLS_LOCK_WAIT_SECONDS") as refused:
        settings_from_environment({"CLOSE_CALLS_LOCK_WAIT_SECONDS": "soon"})
    assert "lock_wait_seconds" in str(refused.value)
    with pytest.raises(ValueError, match="workers"):
        settings_from_environment({}, workers=0)
    with pytest.raises(ValueError, match="backfill_start"):
        settings_from_environment({}, backfill_start="2999-01-01")
    with pytest.raises(TypeError, match="duckdb_pth"):
        settings_from_environment({}, duckdb_pth="x")
