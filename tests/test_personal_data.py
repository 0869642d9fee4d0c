"""Personal data under control (docs/privacy.md), end to end against the sandbox over loopback.

* with `phone_numbers: hash`, `notes: drop`, `transcript_text: drop`, the real Dagster job
  (sync, dbt build, report, read-only copy) leaves no phone number, note or utterance text of the
  sandbox's truth in any column of any table, the report, the run's log or its Dagster events;
  its conversation metrics equal a `keep` run's; one number written two ways has one hash;
* the files a run writes are owner-only (or group-readable with `file_mode: group`);
* a call deleted in Close keeps no personal field after the next run; `close-calls erase`
  removes what it names and nothing else; a stricter policy rewrites the stored rows;
* `hash` without a key fails before any request.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import re
import socket
import stat
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from helpers.duck import query

from close_calls_pipeline.cli.main import build_parser
from close_calls_pipeline.cli.main import main as cli_main
from close_calls_pipeline.cli.project import dagster_home
from close_calls_pipeline.cli.run import run_pipeline
from close_calls_pipeline.core import config, warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.personal_data import (
    HASH_KEY_ENV,
    PersonalDataError,
    PersonalDataPolicy,
    normalise_phone,
    phone_hash,
)
from close_calls_pipeline.core.publish import publish_readonly_copy
from close_calls_pipeline.core.records import TRANSCRIPT_TYPES
from close_calls_pipeline.core.sync import SyncOptions, sync_calls
from close_calls_pipeline.dagster_component.component import (
    CloseCallsComponent,
    build_definitions,
)
from close_calls_pipeline.dagster_component.keys import PIPELINE_JOB
from close_calls_pipeline.dagster_component.resources import CloseApiResource
from close_calls_pipeline.report import default_report_path
from close_calls_pipeline.sandbox import SandboxServer, SandboxStore

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = "a-test-hash-key-0123456789"
STRICT = {"phone_numbers": "hash", "notes": "drop", "transcript_text": "drop"}
PHONE_FIELDS = (
    "phone",
    "local_phone",
    "local_phone_formatted",
    "remote_phone",
    "remote_phone_formatted",
)
PERSONAL_COLUMNS = (
    *PHONE_FIELDS,
    "note",
    "note_html",
    "recording_url",
    "voicemail_url",
    "recording_summary_text",
    "recording_summary_html",
    "voicemail_summary_text",
    "voicemail_summary_html",
)
KEPT_COLUMNS = ("id", "date_created", "date_updated", "disposition", "duration", "cost")
FAST = SyncOptions(workers=4, window_count=4)


# --- what the sandbox's truth says is personal ---------------------------------------------------


def personal_values(truth: dict[str, dict]) -> dict[str, set[str]]:
    """Phone numbers (as sent, and their digits), notes, and utterance texts long enough not to
    occur by chance in unrelated text (the report's scripts, a summary)."""
    phones, notes, texts = set(), set(), set()
    for call in truth.values():
        for name in PHONE_FIELDS:
            if call.get(name):
                phones.add(call[name])
                phones.add(re.sub(r"\D", "", call[name]))
        notes |= {call[name] for name in ("note", "note_html") if call.get(name)}
        for _, key in TRANSCRIPT_TYPES:
            for utterance in (call.get(key) or {}).get("utterances") or []:
                if len(utterance.get("text") or "") >= 20:
                    texts.add(utterance["text"])
    return {"phone": phones, "note": notes, "utterance": texts}


def found_in(text: str, values: dict[str, set[str]]) -> list[str]:
    """What personal values `text` holds (kind and the first characters: never all of it)."""
    return [f"{kind}: {value[:12]}" for kind, found in values.items() for value in found
            if value in text]  # fmt: skip


def every_column_as_text(db_path: Path) -> dict[str, str]:
    """Every column of every table and view of a warehouse file, as text, by table."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() ORDER BY ALL"
        ).fetchall()
        texts = {}
        for schema, table in tables:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?", [schema, table]).fetchall()]  # fmt: skip
            rows = con.execute(
                f"SELECT {', '.join(f'CAST({q(c)} AS VARCHAR)' for c in columns)} "
                f"FROM {q(schema)}.{q(table)}"
            ).fetchall()
            texts[f"{schema}.{table}"] = "\n".join("\t".join(map(str, row)) for row in rows)
        assert "close.calls" in texts and "analytics.fct_call_conversations" in texts
        return texts
    finally:
        con.close()


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the two runs: strict and keep, same frozen sandbox ------------------------------------------


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run_job(
    server: SandboxServer, db_path: Path, **attributes
) -> tuple[dg.ExecuteInProcessResult, str, str]:
    """The real pipeline job (sync, dbt build, report, read-only copy); returns the result, the
    Python log output of the package, and every Dagster event of the run (messages, metadata)."""
    project_dir = db_path.parent.parent  # the run's project folder: data/ and .close_calls/
    settings = CloseCallsComponent(duckdb_path=str(db_path), **attributes).settings(project_dir)
    definitions = build_definitions(
        settings,
        close_api=CloseApiResource(api_key=server.api_key, base_url=server.base_url, workers=4),
    )
    handler, package_logger = CapturedLogs(), logging.getLogger("close_calls_pipeline")
    package_logger.addHandler(handler)
    level, package_logger.level = package_logger.level, logging.DEBUG
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = definitions.resolve_job_def(PIPELINE_JOB).execute_in_process(instance=instance)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(level)
    events = "\n".join(repr(entry) for entry in instance.all_logs(result.run_id))
    return result, "\n".join(handler.lines), events


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A frozen sandbox in which one number is written two ways on two calls; a strict run
    (hash / drop / drop, files private) and a keep run (files shared with the group)."""
    store = SandboxStore(calls=300, seed=11, live=False)
    truth = store.truth()
    first, second = list(truth)[:2]
    store.update_call(second, remote_phone=truth[first]["remote_phone"],
                      remote_phone_formatted=truth[first]["remote_phone_formatted"])  # fmt: skip
    # two quarantined copies of a call with every kind of personal data: one that cannot be
    # typed (its payload is policed), one that is not UTF-8 (its payload is withheld)
    rich = truth[rich_calls(store, 1)[0]]
    at = store.now - timedelta(days=3)
    store.put_raw_call(dict(rich, id="acti_badcost", cost="twelve"), at=at)
    body = orjson.dumps(dict(rich, id="acti_badbytes")).replace(b'"note":"', b'"note":"\xff', 1)
    store.put_raw_call_bytes("acti_badbytes", body, at=at)
    server = SandboxServer(store, api_key="test-key").start()
    root = tmp_path_factory.mktemp("personal_data")
    saved = os.environ.get(HASH_KEY_ENV)
    os.environ[HASH_KEY_ENV] = KEY
    try:
        strict_db = root / "strict" / "data" / "close_calls.duckdb"
        strict = run_job(server, strict_db, personal_data=STRICT)
        keep_db = root / "keep" / "data" / "close_calls.duckdb"
        keep = run_job(server, keep_db, file_mode="group")
    finally:
        server.stop()
        if saved is None:
            os.environ.pop(HASH_KEY_ENV)
        else:
            os.environ[HASH_KEY_ENV] = saved
    assert strict[0].success and keep[0].success
    return {"store": store, "same_number": (first, second), "strict": (strict_db, *strict),
            "keep": (keep_db, *keep)}  # fmt: skip


@pytest.mark.slow  # two whole Dagster runs (the `runs` fixture)
def test_a_strict_run_leaves_no_phone_note_or_utterance_text_anywhere(runs):
    db_path, _, log_text, events = runs["strict"]
    values = personal_values(runs["store"].truth())
    assert all(values.values()), "the sandbox has phones, notes and utterance texts"
    # the same values are there in a keep run: the scan finds what it looks for
    keep_texts = every_column_as_text(runs["keep"][0])
    assert {kind for kind in values if found_in(keep_texts["close.calls"], {kind: values[kind]})} \
        == {"phone", "note", "utterance"}  # fmt: skip

    for path in (db_path, config.readonly_copy_path(db_path)):
        for table, text in every_column_as_text(path).items():
            assert not found_in(text, values), (path.name, table, found_in(text, values)[:3])
    report = default_report_path(db_path).read_text()
    assert not found_in(report, values)
    assert not found_in(log_text, values) and "sync" in log_text
    assert not found_in(events, values) and "preview" in events
    assert "phone_numbers=hash notes=drop transcript_text=drop" in events  # the policy is shown
    # previews and logs show no personal field whatever the policy: a keep run's neither
    assert not found_in(runs["keep"][2] + runs["keep"][3], values)

    # quarantined payloads: policed, or withheld when they are not JSON
    rejected = dict(query(db_path, "SELECT object_id, payload FROM close.rejected_records"))
    assert set(rejected) == {"acti_badcost", "acti_badbytes"}
    assert rejected["acti_badbytes"] == warehouse.WITHHELD_PAYLOAD
    policed = json.loads(rejected["acti_badcost"])
    assert policed["note"] is None and len(policed["remote_phone"]) == 64
    assert query(runs["keep"][0], "SELECT count(*) FROM close.rejected_records "
                                  "WHERE payload_bytes IS NOT NULL") == [(1,)]  # fmt: skip

    # what stays: hashed numbers, the question flags, the shape of transcripts in _raw
    assert query(db_path, "SELECT count(*) FROM close.call_transcript_utterances "
                          "WHERE text IS NOT NULL OR is_question IS NULL") == [(0,)]  # fmt: skip
    assert query(db_path, "SELECT count(*) FROM close.calls WHERE note IS NOT NULL "
                          "OR note_html IS NOT NULL") == [(0,)]  # fmt: skip
    (raw,) = query(db_path, "SELECT _raw FROM close.calls WHERE has_recording_transcript "
                            "AND recording_url IS NOT NULL LIMIT 1")[0]  # fmt: skip
    utterance = json.loads(raw)["recording_transcript"]["utterances"][0]
    assert utterance["text"] is None and isinstance(utterance["is_question"], bool)
    assert query(db_path, "SELECT phone_numbers, notes, transcript_text, summaries, "
                          "recording_urls, key_fingerprint IS NOT NULL "
                          "FROM close.personal_data_policy") == [
        ("hash", "drop", "drop", "keep", "keep", True)]  # fmt: skip


def rounded(rows: list[tuple]) -> list[tuple]:
    """DOUBLE sums may differ in their last bits with the order DuckDB's threads add them."""
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.mark.slow  # two whole Dagster runs (the `runs` fixture)
def test_conversation_metrics_with_the_text_dropped_equal_those_of_a_keep_run(runs):
    strict_db, keep_db = runs["strict"][0], runs["keep"][0]
    for table in ("fct_call_conversations", "call_metrics_by_user_weekly", "fct_calls"):
        sql = f"SELECT * FROM analytics.{table} ORDER BY ALL"
        strict, keep = rounded(query(strict_db, sql)), rounded(query(keep_db, sql))
        assert strict == keep and len(keep) > 10, table
    questions = (
        "SELECT sum(user_questions + contact_questions) FROM analytics.fct_call_conversations"
    )
    assert query(strict_db, questions)[0][0] > 0


@pytest.mark.slow  # two whole Dagster runs (the `runs` fixture)
def test_one_number_written_two_ways_has_one_keyed_hash(runs):
    db_path = runs["strict"][0]
    first, second = runs["same_number"]
    number = runs["store"].truth()[first]["remote_phone"]
    expected = hmac.new(KEY.encode(), number.encode(), hashlib.sha256).hexdigest()
    rows = query(db_path, "SELECT id, phone, remote_phone, remote_phone_formatted FROM close.calls "
                          "WHERE id IN (?, ?)", [first, second])  # fmt: skip
    assert {value for row in rows for value in row[2:]} == {expected}
    # and it joins: the two calls share it, no other call does
    assert query(db_path, "SELECT count(*) FROM close.calls WHERE remote_phone = ?",
                 [expected]) == [(2,)]  # fmt: skip


@pytest.mark.slow  # two whole Dagster runs (the `runs` fixture)
def test_files_are_owner_only_by_default_and_group_readable_on_request(runs):
    for name, (file_bits, dir_bits, copy_bits) in {
        "strict": (0o600, 0o700, 0o400),
        "keep": (0o640, 0o750, 0o440),
    }.items():
        db_path = runs[name][0]
        assert mode(db_path.parent) == dir_bits, name  # data/, created by the run
        assert mode(db_path.parent.parent) == dir_bits, name
        assert mode(db_path) == file_bits, name
        assert mode(default_report_path(db_path)) == file_bits, name
        assert mode(config.readonly_copy_path(db_path)) == copy_bits, name
        for path in db_path.parent.iterdir():
            assert mode(path) & 0o007 == 0, (name, path.name, oct(mode(path)))
        target = config.dbt_target_path(db_path.parent.parent) / "dagster"
        assert mode(target / "run_results.json") & 0o007 == 0, name


def test_the_dagster_home_the_cli_creates_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "new" / "home"))
    home = dagster_home(tmp_path)
    assert mode(home) == 0o700 and mode(home.parent) == 0o700
    assert mode(home / "dagster.yaml") & 0o077 == 0


# --- deletes, erasure, policy changes: the core sync on a small sandbox ----------------------------


def personal_state(con, call_id: str) -> dict:
    row = con.execute(f"SELECT {', '.join(PERSONAL_COLUMNS)}, _raw FROM close.calls WHERE id = ?",
                      [call_id]).fetchone()  # fmt: skip
    raw = json.loads(row[-1])
    texts = con.execute(
        "SELECT count(*) FILTER (WHERE text IS NOT NULL) FROM close.call_transcript_utterances "
        "WHERE call_id = ?", [call_id]).fetchone()[0]  # fmt: skip
    return {
        "columns": [v for v in row[:-1] if v is not None],
        "raw": sorted(
            k
            for k in (*PERSONAL_COLUMNS, "recording_transcript", "voicemail_transcript")
            if raw.get(k) is not None
        ),  # fmt: skip
        "utterance_texts": texts,
    }


def kept(con, call_id: str) -> tuple:
    return con.execute(f"SELECT {', '.join(KEPT_COLUMNS)}, _deleted_at FROM close.calls "
                       "WHERE id = ?", [call_id]).fetchone()  # fmt: skip


def rich_calls(store, n: int) -> list[str]:
    """Calls holding every kind of personal data: numbers, a note, a recording transcript."""
    return [i for i, c in store.truth().items()
            if c.get("note") and c.get("recording_url")
            and (c.get("recording_transcript") or {}).get("utterances")][:n]  # fmt: skip


def test_a_call_deleted_in_close_keeps_no_personal_field_after_the_next_run(make_sandbox, connect):
    sandbox = make_sandbox(calls=200, seed=3)
    store, con = sandbox.store, connect()
    with CloseClient(sandbox.api_key, sandbox.base_url) as client:
        sync_calls(client, con, FAST)
        gone, stays = rich_calls(store, 2)
        before, stays_before = kept(con, gone), personal_state(con, stays)
        assert personal_state(con, gone)["columns"]
        store.delete_call(gone)
        store.advance(30)
        summary = sync_calls(client, con, FAST)
    assert summary.calls_deleted == 1
    assert personal_state(con, gone) == {"columns": [], "raw": [], "utterance_texts": 0}
    after = kept(con, gone)
    assert after[:-1] == before[:-1] and after[-1] is not None  # id, dates, ... and _deleted_at
    assert personal_state(con, stays) == stays_before


def test_erase_removes_what_it_names_and_nothing_else(make_sandbox, tmp_path, monkeypatch, capsys):
    sandbox = make_sandbox(calls=200, seed=4)
    store = sandbox.store
    db_path = tmp_path / "data" / "close_calls.duckdb"
    con = warehouse.connect(str(db_path))
    with CloseClient(sandbox.api_key, sandbox.base_url) as client:
        sync_calls(client, con, FAST)
    by_id, by_lead, by_phone = rich_calls(store, 3)
    truth = store.truth()
    lead = truth[by_lead]["lead_id"]
    phone = truth[by_phone]["remote_phone_formatted"]  # found in any of its forms
    named = {i for i, c in truth.items()
             if i == by_id or c["lead_id"] == lead or c.get("remote_phone") == truth[by_phone]["remote_phone"]}  # fmt: skip
    snapshot = "SELECT * EXCLUDE (_raw_hash) FROM close.calls WHERE id NOT IN ({}) ORDER BY id"
    others_sql = snapshot.format(", ".join(f"'{i}'" for i in named))
    others = con.execute(others_sql).fetchall()
    utterances = (
        "SELECT * FROM close.call_transcript_utterances WHERE call_id NOT IN ({}) ORDER BY ALL"
    )
    other_utterances = con.execute(utterances.format(", ".join(f"'{i}'" for i in named))).fetchall()
    con.close()

    for _ in range(2):  # the second keeps the first copy, as the previous one (core/publish.py)
        publish_readonly_copy(db_path)
    previous = config.readonly_previous_path(db_path)
    assert previous.exists()

    monkeypatch.setenv(config.CLOSE_CALLS_DUCKDB_ENV, str(db_path))
    argv = ["erase", "--project-dir", str(tmp_path)]
    argv += ["--call-id", by_id, "--lead-id", lead, "--phone", phone]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f"erased the personal data of {len(named)} calls" in out
    assert not found_in(out, personal_values(truth))

    for path in (db_path, config.readonly_copy_path(db_path)):  # the copy was published again
        con = duckdb.connect(str(path), read_only=True)
        try:
            for call_id in named:
                assert personal_state(con, call_id) == {"columns": [], "raw": [],
                                                        "utterance_texts": 0}  # fmt: skip
                assert kept(con, call_id)[-1] is None  # erased, not deleted
            assert con.execute(others_sql).fetchall() == others
            assert con.execute(utterances.format(", ".join(f"'{i}'" for i in named))).fetchall() \
                == other_utterances  # fmt: skip
        finally:
            con.close()
    assert not previous.exists()  # it held the erased data: deleted, and no copy kept
    assert cli_main(["erase"]) == 2  # nothing named


def test_a_stricter_policy_rewrites_the_stored_rows_as_a_fresh_strict_sync_writes_them(
    make_sandbox, connect, caplog
):
    sandbox = make_sandbox(calls=200, seed=5)
    strict = SyncOptions(workers=4, window_count=4,
                         personal_data=PersonalDataPolicy.of(STRICT), hash_key=KEY.encode())  # fmt: skip
    rewritten, fresh = connect("rewritten.duckdb"), connect("fresh.duckdb")
    with CloseClient(sandbox.api_key, sandbox.base_url) as client:
        sync_calls(client, rewritten, FAST)
        assert rewritten.execute("SELECT count(note) FROM close.calls").fetchone()[0] > 0
        with caplog.at_level(logging.INFO, logger="close_calls_pipeline"):
            sync_calls(client, rewritten, strict)
        sync_calls(client, fresh, strict)
    said = [r.getMessage() for r in caplog.records if "stricter" in r.getMessage()]
    assert len(said) == 1 and "notes: keep -> drop" in said[0], said
    # the data, not the bookkeeping: when it landed, and its change number (one sequence per file)
    calls = "SELECT * EXCLUDE (_loaded_at, _change_seq) FROM close.calls ORDER BY id"
    assert rewritten.execute(calls).fetchall() == fresh.execute(calls).fetchall()
    utterances = "SELECT * EXCLUDE (_loaded_at) FROM close.call_transcript_utterances ORDER BY ALL"
    assert rewritten.execute(utterances).fetchall() == fresh.execute(utterances).fetchall()

    # looser again: said, and nothing comes back
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="close_calls_pipeline"):
        with CloseClient(sandbox.api_key, sandbox.base_url) as client:
            sync_calls(client, rewritten, FAST)
    assert any("cannot be restored" in r.getMessage() for r in caplog.records)
    assert rewritten.execute("SELECT count(note) FROM close.calls").fetchone()[0] == 0


def test_hash_without_a_key_fails_before_any_request(sandbox, connect, monkeypatch, tmp_path):
    options = SyncOptions(personal_data=PersonalDataPolicy(phone_numbers="hash"))
    with CloseClient(sandbox.api_key, sandbox.base_url) as client:
        with pytest.raises(PersonalDataError, match=HASH_KEY_ENV):
            sync_calls(client, connect(), options)
        assert client.counters.snapshot()["requests"] == 0
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    out = io.StringIO()
    assert run_pipeline(project_dir=tmp_path, personal_data={"phone_numbers": "hash"}, out=out) == 2
    assert HASH_KEY_ENV in out.getvalue()


def test_policies_and_numbers_are_checked_and_normalised():
    with pytest.raises(PersonalDataError, match="notes"):
        PersonalDataPolicy(notes="hash")
    with pytest.raises(PersonalDataError, match="emails"):
        PersonalDataPolicy.of({"emails": "drop"})
    forms = ["+1 415-555-0100", "+14155550100", "001 (415) 555.0100"]
    assert {normalise_phone(f) for f in forms} == {"+14155550100"}
    assert len({phone_hash(f, b"k") for f in forms}) == 1
    assert phone_hash(phone_hash("+14155550100", b"k"), b"k") == phone_hash("+14155550100", b"k")
    assert phone_hash("+14155550100", b"k") != phone_hash("+14155550100", b"other")


def test_the_component_and_the_cli_take_the_policies():
    component = CloseCallsComponent.resolve_from_yaml(
        "personal_data:\n  phone_numbers: hash\n  notes: drop\nfile_mode: group\n"
    )
    settings = component.settings(REPO_ROOT)
    assert settings.personal_data == PersonalDataPolicy(phone_numbers="hash", notes="drop")
    assert settings.file_mode == "group"
    with pytest.raises(ValueError, match="phone_numbers"):
        CloseCallsComponent.resolve_from_yaml("personal_data:\n  phone_numbers: scramble\n")
    with pytest.raises(ValueError, match="emails"):
        CloseCallsComponent.resolve_from_yaml("personal_data:\n  emails: drop\n")
    with pytest.raises(ValueError, match="file_mode"):
        CloseCallsComponent(file_mode="world")
    args = build_parser().parse_args(
        ["run", "--phone-numbers", "hash", "--transcript-text", "drop", "--file-mode", "group"]
    )
    assert (args.phone_numbers, args.transcript_text, args.notes, args.file_mode) == (
        "hash", "drop", None, "group")  # fmt: skip
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--notes", "hash"])


def test_a_dagster_run_with_hash_and_no_key_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    with socket.socket() as probe:  # a free port nothing listens on: a request would fail there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db_path = tmp_path / "data" / "close_calls.duckdb"
    settings = CloseCallsComponent(
        duckdb_path=str(db_path), personal_data={"phone_numbers": "hash"}, dbt_marts=False
    ).settings(tmp_path)
    definitions = build_definitions(
        settings, close_api=CloseApiResource(api_key="k", base_url=f"http://127.0.0.1:{port}")
    )
    with pytest.raises(Exception) as failure:  # noqa: PT011 - Dagster wraps the resource's error
        definitions.resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=dg.DagsterInstance.ephemeral()
        )
    chain, error = [], failure.value
    while error is not None:
        chain.append(error)
        error = error.__cause__
    assert any(isinstance(e, PersonalDataError) for e in chain), chain
    assert not db_path.exists()
