"""Compare a warehouse file with the sandbox's ground truth, field by field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import duckdb

from close_calls_pipeline.core.close_api import CALL_FIELDS
from close_calls_pipeline.core.records import CALL_FIELD_COLUMNS, TRANSCRIPT_TYPES
from helpers.duck import query


def expected_payload(call: dict) -> dict:
    """What the connector asks for: the truth restricted to the requested fields."""
    return {k: v for k, v in call.items() if k in CALL_FIELDS}


def assert_warehouse_matches_truth(con: duckdb.DuckDBPyConnection, store) -> None:
    truth = store.truth()
    ids = [r[0] for r in con.execute("SELECT id FROM close.calls").fetchall()]
    assert len(ids) == len(set(ids)), "an id appears twice in close.calls"

    columns = (
        ["id", "custom_fields"]
        + [name for name, _, _ in CALL_FIELD_COLUMNS]
        + [
            "has_recording_transcript",
            "has_voicemail_transcript",
            "recording_summary_text",
            "voicemail_summary_text",
            "_raw",
        ]
    )
    live = {
        row[0]: dict(zip(columns, row))
        for row in con.execute(
            f"SELECT {', '.join(columns)} FROM close.calls WHERE _deleted_at IS NULL"
        ).fetchall()
    }
    assert set(live) == set(truth), (
        f"missing: {sorted(set(truth) - set(live))[:5]}, extra: {sorted(set(live) - set(truth))[:5]}"
    )
    for call_id, call in truth.items():
        row = live[call_id]
        assert json.loads(row["_raw"]) == expected_payload(call), call_id
        for name, _, convert in CALL_FIELD_COLUMNS:
            expected = convert(call.get(name))
            actual = row[name]
            assert actual == expected, f"{call_id}.{name}: {actual!r} != {expected!r}"
        custom_fields = None if row["custom_fields"] is None else json.loads(row["custom_fields"])
        assert custom_fields == call.get("custom_fields"), f"{call_id}.custom_fields"
        for kind, key in TRANSCRIPT_TYPES:
            transcript = call.get(key)
            assert row[f"has_{kind}_transcript"] == (transcript is not None), (call_id, kind)
            if transcript is not None:
                assert row[f"{kind}_summary_text"] == transcript.get("summary_text")

    deleted_in_warehouse = {
        r[0]
        for r in con.execute("SELECT id FROM close.calls WHERE _deleted_at IS NOT NULL").fetchall()
    }
    assert deleted_in_warehouse <= store.deleted_ids
    # every deleted call the warehouse ever held carries _deleted_at
    assert not (set(ids) & store.deleted_ids) - deleted_in_warehouse

    expected_utterances = sorted(
        (
            call_id,
            kind,
            index,
            u.get("speaker_label"),
            u.get("speaker_side"),
            float(u["start"]),
            float(u["end"]),
            u.get("text"),
        )
        for call_id, call in truth.items()
        for kind, key in TRANSCRIPT_TYPES
        if call.get(key)
        for index, u in enumerate(call[key].get("utterances") or [])
    )
    actual_utterances = sorted(
        con.execute(
            "SELECT call_id, transcript_type, utterance_index, speaker_label, speaker_side, "
            "start_seconds, end_seconds, text FROM close.call_transcript_utterances"
        ).fetchall()
    )
    assert actual_utterances == expected_utterances


def warehouse_contents(con: duckdb.DuckDBPyConnection) -> dict:
    """Everything a user can see, minus load timestamps and change numbers (a sequence: a run
    that crashed used some up, so a rerun numbers the same changes higher): to compare two
    warehouses."""
    return {
        "calls": con.execute(
            "SELECT * EXCLUDE (_loaded_at, _change_seq) FROM close.calls ORDER BY id"
        ).fetchall(),
        "utterances": con.execute(
            "SELECT * EXCLUDE (_loaded_at) FROM close.call_transcript_utterances "
            "ORDER BY call_id, transcript_type, utterance_index"
        ).fetchall(),
        "mark": con.execute(
            "SELECT high_water_mark_after FROM close.sync_state ORDER BY finished_at DESC LIMIT 1"
        ).fetchall(),
        "rejected": con.execute(
            "SELECT object_id, reason FROM close.rejected_records ORDER BY ALL"
        ).fetchall(),
    }


# --- the marts' headline figures against the truth ------------------------------------------------


def truth_counts(store) -> dict:
    """The headline figures of the marts, computed from the sandbox's ground truth."""
    calls = list(store.truth().values())
    by_disposition: dict[str, int] = {}
    for c in calls:
        by_disposition[c["disposition"]] = by_disposition.get(c["disposition"], 0) + 1
    return {
        "calls": len(calls),
        "answered": sum(1 for c in calls if c.get("disposition") == "answered"),
        "voicemails_left": sum(1 for c in calls if c.get("disposition") == "vm-left"),
        "duration": sum(c.get("duration") or 0 for c in calls),
        "cost_usd": sum(Decimal(c["cost"]) for c in calls if c.get("cost")) / 100,
        "utterances": sum(
            len((c.get(key) or {}).get("utterances") or [])
            for c in calls
            for key in ("recording_transcript", "voicemail_transcript")
        ),
        "by_disposition": by_disposition,
    }


def mart_counts(db_path: Path) -> dict:
    fct = query(
        db_path,
        "SELECT count(*), count(*) FILTER (WHERE is_answered), "
        "sum(utterance_count) FROM analytics.fct_calls",
    )[0]
    daily = query(
        db_path,
        "SELECT sum(calls), sum(answered_calls), sum(voicemails_left), "
        "sum(total_duration_seconds), sum(total_cost_usd) "
        "FROM analytics.call_metrics_daily",
    )[0]
    assert tuple(int(v) for v in daily[:2]) == fct[:2], (
        "call_metrics_daily disagrees with fct_calls"
    )
    return {
        "calls": int(daily[0]),
        "answered": int(daily[1]),
        "voicemails_left": int(daily[2]),
        "duration": int(daily[3]),
        "cost_usd": Decimal(daily[4]),
        "utterances": int(fct[2]),
        "by_disposition": dict(
            query(
                db_path, "SELECT disposition, calls::INT FROM analytics.call_metrics_by_disposition"
            )
        ),
    }
