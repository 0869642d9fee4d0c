"""One Call field list: `core/call_fields.py` declares it; the typing's `CALL_FIELD_COLUMNS`, the
DDL, the Arrow schema, the client's `_fields`, the sandbox and the dbt source must agree with it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import yaml

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.call_fields import DOCUMENTED_CALL_FIELDS
from close_calls_pipeline.core.close_api import CALL_FIELDS as CLIENT_FIELDS
from close_calls_pipeline.core.records import CALL_FIELD_COLUMNS, CALLS_SCHEMA, TRANSCRIPT_TYPES
from close_calls_pipeline.sandbox.data import CALL_FIELDS as SANDBOX_FIELDS

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = list(DOCUMENTED_CALL_FIELDS)
TYPED = ["id", *(name for name, _, _ in CALL_FIELD_COLUMNS), "custom_fields"]
UNDOCUMENTED_REQUESTED = {"has_recording", "date_answered"}  # seen in the wild, kept in _raw


def ddl_columns() -> list[str]:
    con = duckdb.connect(":memory:")
    try:
        warehouse.run_script(con, "schema.sql")
        return [
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'close' AND table_name = 'calls' ORDER BY ordinal_position"
            ).fetchall()
        ]
    finally:
        con.close()


def test_the_ddl_is_the_arrow_schema_plus_the_internal_columns():
    columns = ddl_columns()  # landed BY NAME: the order may differ
    assert sorted(columns) == sorted([*CALLS_SCHEMA.names, "_raw_hash", "_change_seq"])
    assert len(columns) == len(set(columns))


def test_the_typing_types_every_documented_field_and_the_arrow_schema_has_them():
    assert sorted(TYPED) == sorted(DOCUMENTED)
    assert set(DOCUMENTED) <= set(CALLS_SCHEMA.names)


def test_the_client_requests_every_documented_field_and_both_transcripts():
    transcripts = {key for _, key in TRANSCRIPT_TYPES}
    assert set(CLIENT_FIELDS) == set(DOCUMENTED) | transcripts | UNDOCUMENTED_REQUESTED
    assert len(CLIENT_FIELDS) == len(set(CLIENT_FIELDS))


def test_the_sandbox_serves_every_documented_field():
    assert sorted(SANDBOX_FIELDS) == sorted(DOCUMENTED)


def test_the_dbt_source_documents_every_column_of_the_table():
    sources = yaml.safe_load(
        (REPO_ROOT / "dbt_project/models/staging/close/_close__sources.yml").read_text()
    )
    (close,) = [s for s in sources["sources"] if s["name"] == "close"]
    (calls,) = [t for t in close["tables"] if t["name"] == "calls"]
    documented = [c["name"] for c in calls["columns"]]
    assert sorted(documented) == sorted(ddl_columns())
