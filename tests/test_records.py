"""Typing raw call text into Arrow: the bulk path and the per-record path agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from close_calls_pipeline.core.records import TypedCalls, custom_fields_json, type_calls

LOADED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def call(call_id: str, **fields) -> dict:
    return {
        "id": call_id,
        "_type": "Call",
        "date_created": "2026-10-01T10:00:00.123456+00:00",
        "date_updated": "2026-10-02T10:00:00+00:00",
        "duration": 42,
        "cost": "13.5",
        "users": ["user_a"],
        "custom_fields": {"cf_score": 7},
        "recording_transcript": {
            "summary_text": "s",
            "summary_html": "<p>s</p>",
            "utterances": [
                {
                    "speaker_label": "A",
                    "speaker_side": "contact",
                    "start": 0,
                    "end": 1.5,
                    "text": "hi",
                },
                {
                    "speaker_label": "B",
                    "speaker_side": "close-user",
                    "start": 2,
                    "end": 3,
                    "text": "yo",
                },
            ],
        },
        **fields,
    }


def rows(typed) -> tuple[list[dict], list[dict]]:
    calls = sorted(typed.calls.to_pylist(), key=lambda r: r["id"])
    utterances = sorted(
        typed.utterances.to_pylist(),
        key=lambda r: (r["call_id"], r["transcript_type"], r["utterance_index"]),
    )
    for row in calls:
        row["_raw"] = json.loads(row["_raw"])
    return calls, utterances


def test_pretty_printed_calls_type_like_compact_ones():
    compact = [json.dumps(call(f"acti_{i}")).encode() for i in range(3)]
    pretty = [json.dumps(call(f"acti_{i}"), indent=2).encode() for i in range(3)]
    assert b"\n" in pretty[0]
    assert rows(type_calls(pretty, LOADED_AT)) == rows(type_calls(compact, LOADED_AT))
    assert type_calls(pretty, LOADED_AT).calls.column("_raw")[0].as_py() == pretty[0].decode()


def test_a_repeated_id_keeps_the_last_copy_and_its_utterances():
    first = call("acti_1", note="first")
    last = call("acti_1", note="last", recording_transcript=None)
    typed = type_calls([json.dumps(c).encode() for c in (first, call("acti_2"), last)], LOADED_AT)
    calls, utterances = rows(typed)
    assert [(c["id"], c["note"]) for c in calls] == [("acti_1", "last"), ("acti_2", None)]
    assert {u["call_id"] for u in utterances} == {"acti_2"}


def test_the_per_record_path_gives_the_bulk_paths_rows_and_names_the_bad_record():
    good = [json.dumps(call(f"acti_{i}")).encode() for i in range(3)]
    bulk = type_calls(good, LOADED_AT)
    bad = json.dumps(call("acti_bad", cost="a lot")).encode()
    careful = type_calls([*good, bad, b"[1, 2]"], LOADED_AT)  # one bad call: record by record
    assert rows(careful) == rows(bulk)
    assert [(r.object_id, r.reason) for r in careful.rejected] == [
        ("acti_bad", "cost: cost is not a number: 'a lot'"),
        (None, "record is not a JSON object"),
    ]


def test_batches_typed_apart_join_with_the_last_copy_of_a_repeated_call():
    later = LOADED_AT + timedelta(seconds=1)
    first = type_calls(
        [json.dumps(c).encode() for c in (call("acti_1", note="first"), call("acti_2"))], LOADED_AT
    )
    last = type_calls(
        [
            json.dumps(
                call(
                    "acti_1",
                    note="last",
                    recording_transcript={
                        "utterances": [{"speaker_label": "C", "start": 5, "end": 6, "text": "new"}]
                    },
                )
            ).encode(),
            b'{"id": 5}',
        ],
        later,
    )
    joined = TypedCalls.concat([first, last])
    calls, utterances = rows(joined)
    assert [(c["id"], c["note"], c["_loaded_at"]) for c in calls] == [
        ("acti_1", "last", later),
        ("acti_2", None, LOADED_AT),
    ]
    assert [(u["call_id"], u["text"]) for u in utterances] == [
        ("acti_1", "new"),
        ("acti_2", "hi"),
        ("acti_2", "yo"),
    ]
    assert [r.reason for r in joined.rejected] == ["missing or empty `id`"]
    assert rows(TypedCalls.concat([first])) == rows(first)


def test_custom_fields_are_kept_as_compact_json_text_and_null_when_absent():
    assert custom_fields_json(b'{"id": "a", "custom_fields": {\n "cf_x" : [1, "two"]}}') == (
        '{"cf_x":[1,"two"]}'
    )
    assert custom_fields_json(b'{"id": "a", "custom_fields": {}}') == "{}"
    assert custom_fields_json(b'{"id": "a", "custom_fields": null}') is None
    assert custom_fields_json(b'{"id": "a"}') is None
