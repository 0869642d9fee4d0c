"""A warehouse synced from the sandbox Close API over loopback, then a real `dbt build` on it.

Shared by the tests that check the marts against the sandbox's truth (`store.truth()`): they
recompute their expectations from the truth, so they hold for any sandbox data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.records import TRANSCRIPT_TYPES
from close_calls_pipeline.core.sync import SyncOptions, refresh_reference_tables, sync_calls
from close_calls_pipeline.sandbox import SandboxServer
from helpers.dbt_fixture import DBT_PROJECT_DIR, DbtResult, run_dbt

SYNC_OPTIONS = SyncOptions(workers=4, window_count=8)

# The one declaration of the known enumeration values (var known_enum_values).
KNOWN_ENUM_VALUES: dict[str, dict[str, list[str]]] = yaml.safe_load(
    (DBT_PROJECT_DIR / "dbt_project.yml").read_text()
)["vars"]["known_enum_values"]
CALL_ENUM_COLUMNS = KNOWN_ENUM_VALUES["stg_close__calls"]
UTTERANCE_ENUM_COLUMNS = KNOWN_ENUM_VALUES["stg_close__call_transcript_utterances"]


def sync(server: SandboxServer, db_path: Path) -> None:
    """One sync run (a backfill first, incremental after) plus the reference tables."""
    con = warehouse.connect(str(db_path))
    try:
        with CloseClient(server.api_key, server.base_url) as client:
            summary = sync_calls(client, con, SYNC_OPTIONS)
            assert summary.records_rejected == 0
            refresh_reference_tables(client, con)
    finally:
        con.close()


def dbt_build(db_path: Path, work_dir: Path) -> DbtResult:
    return run_dbt(["build"], db_path, work_dir)


def parse_timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def called_at(call: dict) -> datetime | None:
    """When the call happened, as fct_calls has it: activity_at, else date_created (UTC)."""
    return parse_timestamp(call.get("activity_at")) or parse_timestamp(call.get("date_created"))


def expected_unknown_enum_values(truth: dict[str, dict]) -> dict[tuple[str, str], int]:
    """(column_name, value) -> number of existing calls with a value outside the known lists."""
    calls_with: dict[tuple[str, str], set[str]] = {}
    for call_id, call in truth.items():
        for column, known in CALL_ENUM_COLUMNS.items():
            value = call.get(column)
            if value is not None and value not in known:
                calls_with.setdefault((column, value), set()).add(call_id)
        for kind, key in TRANSCRIPT_TYPES:
            utterances = (call.get(key) or {}).get("utterances") or []
            for utterance in utterances:
                values = {"transcript_type": kind, "speaker_side": utterance.get("speaker_side")}
                for column, known in UTTERANCE_ENUM_COLUMNS.items():
                    value = values[column]
                    if value is not None and value not in known:
                        calls_with.setdefault((column, value), set()).add(call_id)
    return {key: len(ids) for key, ids in calls_with.items()}


def allowed_warnings(store) -> set[str]:
    """Names of the warn-severity tests the sandbox's data explains, and only those.

    An outcome or user id on a call that close.outcomes / close.users do not have, and an
    enumeration value outside the known lists (each accepted_values test is named
    accepted_values_<model>_<column>)."""
    truth = store.truth()
    allowed = set()
    outcome_ids = {o["id"] for o in store.outcomes}
    if any(c.get("outcome_id") and c["outcome_id"] not in outcome_ids for c in truth.values()):
        allowed.add("calls_point_at_known_outcomes")
    user_ids = {u["id"] for u in store.users}
    if any(c.get("user_id") and c["user_id"] not in user_ids for c in truth.values()):
        allowed.add("relationships_fct_calls_user_id")
    for column, _ in expected_unknown_enum_values(truth):
        if column in CALL_ENUM_COLUMNS:
            allowed |= {
                f"accepted_values_stg_close__calls_{column}",
                f"accepted_values_fct_calls_{column}",
            }
        else:
            allowed.add(f"accepted_values_stg_close__call_transcript_utterances_{column}")
    return allowed


def warned_test_names(result: DbtResult) -> set[str]:
    """Test names (unique id without package and hash) that ended in `warn`."""
    return {
        unique_id.split(".")[2] for unique_id, status in result.statuses.items() if status == "warn"
    }


def is_allowed(test_name: str, allowed: set[str]) -> bool:
    # default names carry the arguments after the column (relationships_fct_calls_outcome_id__...)
    return any(test_name == name or test_name.startswith(name + "__") for name in allowed)
