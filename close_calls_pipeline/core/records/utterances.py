"""Transcripts: a call's recording and voicemail transcripts as rows of the utterance table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute

from .common import TIMESTAMP, RecordError, constant, to_float, to_str

TRANSCRIPT_TYPES = (("recording", "recording_transcript"), ("voicemail", "voicemail_transcript"))

UTTERANCES_SCHEMA = pa.schema(
    [
        ("call_id", pa.string()),
        ("transcript_type", pa.string()),
        ("utterance_index", pa.int32()),
        ("speaker_label", pa.string()),
        ("speaker_side", pa.string()),
        ("start_seconds", pa.float64()),
        ("end_seconds", pa.float64()),
        ("text", pa.string()),
        ("_loaded_at", TIMESTAMP),
        # The text contains "?" (as the dbt models count questions); when a personal_data
        # policy dropped the text, the flag it recorded before (core/personal_data.py).
        ("is_question", pa.bool_()),
    ]
)

UTTERANCE_STRUCT = pa.struct(
    [
        ("speaker_label", pa.string()),
        ("speaker_side", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("text", pa.string()),
        ("is_question", pa.bool_()),
    ]
)
TRANSCRIPT_STRUCT = pa.struct(
    [
        ("summary_text", pa.string()),
        ("summary_html", pa.string()),
        ("utterances", pa.list_(UTTERANCE_STRUCT)),
    ]
)


def transcript_rows(
    call_id: str, kind: str, transcript: Any
) -> tuple[list[tuple], str | None, str | None]:
    """Utterance rows and summaries of one transcript, or RecordError if its shape is wrong."""
    if not isinstance(transcript, dict):
        raise RecordError(f"{kind}_transcript is not an object")
    utterances = transcript.get("utterances") or []
    if not isinstance(utterances, list):
        raise RecordError(f"{kind}_transcript.utterances is not a list")
    rows = []
    for index, utterance in enumerate(utterances):
        if not isinstance(utterance, dict):
            raise RecordError(f"{kind}_transcript.utterances[{index}] is not an object")
        try:
            start, end = to_float(utterance.get("start")), to_float(utterance.get("end"))
        except RecordError as error:
            raise RecordError(f"{kind}_transcript.utterances[{index}]: {error}") from None
        text = to_str(utterance.get("text"))
        flagged = utterance.get("is_question")
        rows.append(
            (
                call_id,
                kind,
                index,
                to_str(utterance.get("speaker_label")),
                to_str(utterance.get("speaker_side")),
                start,
                end,
                text,
                flagged if isinstance(flagged, bool) else (None if text is None else "?" in text),
            )
        )
    return rows, to_str(transcript.get("summary_text")), to_str(transcript.get("summary_html"))


def utterance_table(ids: pa.Array, kind: str, lists: pa.ListArray, loaded_at: datetime) -> pa.Table:
    """Flatten one transcript column (a list of utterance structs per call) into child rows."""
    flat = lists.flatten()
    if flat.null_count:
        raise ValueError("an utterance is not an object")
    parents = pa.compute.list_parent_indices(lists)
    count = len(flat)
    positions = pa.compute.subtract(pa.compute.cumulative_sum(constant(1, count, pa.int32())), 1)
    index = pa.compute.subtract(positions, pa.compute.take(lists.offsets, parents))
    return pa.Table.from_arrays(
        [
            pa.compute.take(ids, parents),
            constant(kind, count, pa.string()),
            index.cast(pa.int32()),
            flat.field("speaker_label"),
            flat.field("speaker_side"),
            flat.field("start"),
            flat.field("end"),
            flat.field("text"),
            constant(loaded_at, count, TIMESTAMP),
            pa.compute.coalesce(
                flat.field("is_question"), pa.compute.match_substring(flat.field("text"), "?")
            ),
        ],
        schema=UTTERANCES_SCHEMA,
    )
