"""The hand-made warehouse the dbt tests build on, and the real dbt CLI run on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from close_calls_pipeline.core import changed_row_tests

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
SCHEMA_SQL = REPO_ROOT / "close_calls_pipeline" / "core" / "sql" / "schema.sql"

LOADED_AT = "2024-03-04 10:00:00+00"

# fmt: off

OUTCOMES = [
    ("o_interested", "Interested"),
    ("o_nointerest", "Not interested"),
]

USERS = [
    ("u1", "ada@example.com", "Ada", "Lovelace"),
    ("u2", "grace@example.com", "Grace", "Hopper"),
]

# id, user_id, user_name (as on the call), date_created, activity_at, direction, call_method,
# status, disposition, duration, cost (cents), outcome_id, has_rec_tx, has_vm_tx, _deleted_at
CALLS = [
    ("c1", "u1", "Ada L.", "2024-03-01 09:59:00+00", "2024-03-01 10:00:00+00", "outbound",
     "regular", "completed", "answered", 120, "12.5", "o_interested", True, False, None),
    ("c2", "u1", "Ada L.", "2024-03-01 11:00:00+00", "2024-03-01 11:00:00+00", "outbound",
     "power", "completed", "vm-left", 30, "2.1", "o_unknown", False, True, None),
    ("c3", "u2", "Grace H.", "2024-03-03 09:00:00+00", None, "outbound",
     "regular", "no-answer", "no-answer", 0, "0.7", None, False, False, None),
    ("c4", "u2", "Grace H.", "2024-03-03 15:00:00+00", "2024-03-03 15:00:00+00", "inbound",
     "regular", "completed", "answered", 60, "10.1", "o_nointerest", False, False, None),
    ("c7", "u2", "Grace H.", "2024-03-03 23:45:00+00", "2024-03-03 23:45:00+00", "outbound",
     "power", "busy", "busy", 0, None, None, False, False, None),
    ("c5", "u1", "Ada L.", "2024-03-02 12:00:00+00", "2024-03-02 12:00:00+00", "outbound",
     "regular", "completed", "answered", 999, "500", "o_interested", True, False,
     "2024-03-03 00:00:00+00"),
    ("c6", "u1", "Ada L.", "2024-03-04 09:00:00+00", "2024-03-04 09:00:00+00", "outbound",
     "regular", "completed", "answered", 10, "1", "o_interested", False, False,
     "2024-03-04 09:30:00+00"),
]

# call_id, transcript_type, utterance_index, speaker_side, start_seconds, end_seconds, text
UTTERANCES = [
    ("c1", "recording", 0, "contact", 0.0, 10.0, "Hello?"),
    ("c1", "recording", 1, "close-user", 10.0, 40.0, "Hi, this is Ada from Example."),
    ("c1", "recording", 2, "contact", 40.0, 50.0, "Sounds interesting."),
    # none for the deleted c5: the sync drops a call's utterances when it marks it deleted
]
# fmt: on


def build_warehouse(db_path: Path) -> None:
    """Create the contract schema and insert the hand-made rows above."""
    con = duckdb.connect(str(db_path))
    try:
        con.execute(SCHEMA_SQL.read_text())
        for outcome_id, name in OUTCOMES:
            con.execute(
                "insert into close.outcomes (id, name, type, _loaded_at) values (?, ?, 'custom', ?)",
                [outcome_id, name, LOADED_AT],
            )
        for user_id, email, first, last in USERS:
            con.execute(
                "insert into close.users (id, email, first_name, last_name, _loaded_at)"
                " values (?, ?, ?, ?, ?)",
                [user_id, email, first, last, LOADED_AT],
            )
        for change_seq, call in enumerate(CALLS, start=1):  # as the sync numbers them
            con.execute(
                """
                insert into close.calls (
                    id, user_id, user_name, date_created, activity_at, direction, call_method,
                    status, disposition, duration, cost, outcome_id, has_recording_transcript,
                    has_voicemail_transcript, _deleted_at, _type, lead_id, contact_id, source,
                    date_updated, _loaded_at, _change_seq
                ) values (?, ?, ?, ?::timestamptz, ?::timestamptz, ?, ?, ?, ?, ?,
                          ?::decimal(18, 6), ?, ?, ?, ?::timestamptz, 'Call', 'lead_1', 'cont_1',
                          'Close.io', ?::timestamptz, ?::timestamptz, ?)
                """,
                [*call, call[3], LOADED_AT, change_seq],
            )
        for call_id, ttype, idx, side, start, end, text in UTTERANCES:
            con.execute(
                "insert into close.call_transcript_utterances (call_id, transcript_type, "
                "utterance_index, speaker_label, speaker_side, start_seconds, end_seconds, text, "
                "_loaded_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [call_id, ttype, idx, side, side, start, end, text, LOADED_AT],
            )
    finally:
        con.close()


class DbtResult:
    def __init__(self, returncode: int, log: str, work_dir: Path):
        self.success = returncode == 0
        self.log = log
        run_results = work_dir / "target" / "run_results.json"
        self.statuses = (
            {r["unique_id"]: r["status"] for r in json.loads(run_results.read_text())["results"]}
            if run_results.exists()
            else {}
        )


def _dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dbt")
    if found is None:
        pytest.skip("dbt executable not found")
    return found


def run_dbt(args: list[str], db_path: Path, work_dir: Path) -> DbtResult:
    """Run the real dbt CLI on dbt_project/, with target and logs kept in work_dir.

    A subprocess rather than dbtRunner: dbt-duckdb keeps its DuckDB handle open in-process, which
    would block reading the file back here.
    """
    env = {
        **os.environ,
        "CLOSE_CALLS_DUCKDB": str(db_path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    cmd = [
        _dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=240)
    return DbtResult(proc.returncode, proc.stdout[-8000:] + proc.stderr[-3000:], work_dir)


def build_as_planned(
    plan, dbt_vars: str, db_path: Path, work_dir: Path, connect
) -> list[changed_row_tests.TestResult]:
    """The plan's dbt command, then (an incremental build) the data tests after it from their
    compiled SQL, as the pipeline runs them (`connect()` opens the warehouse); dbt must succeed
    and no test may fail. The tests' results (none when dbt ran them itself)."""
    tests = None
    if plan.tests_after_dbt:  # compiled first, as the pipeline does (once per fingerprint)

        def compile_manifest() -> dict:
            compiled = run_dbt(
                [*changed_row_tests.COMPILE_ARGS, "--vars", dbt_vars], db_path, work_dir
            )
            assert compiled.success, compiled.log
            return json.loads((work_dir / "target" / "manifest.json").read_text())

        cache = work_dir / changed_row_tests.CACHE_FILE
        tests = changed_row_tests.compiled_tests(cache, plan.fingerprint, compile_manifest)
    result = run_dbt([*plan.dbt_command, "--vars", dbt_vars], db_path, work_dir)
    assert result.success, result.log
    if tests is None:
        return []
    con = connect()
    try:
        results = changed_row_tests.run_tests(con, tests).results
    finally:
        con.close()
    assert not changed_row_tests.failed(results), changed_row_tests.failed(results)
    return results


def model_count() -> int:
    """The dbt project's models (one `.sql` file each): what a full build must build."""
    return len(list((DBT_PROJECT_DIR / "models").rglob("*.sql")))
