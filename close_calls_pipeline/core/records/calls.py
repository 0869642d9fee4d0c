"""Calls: the call table, typed in bulk by Arrow's JSON reader or, when a batch is unusual, one
record at a time (see the package's docstring)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute
import pyarrow.json

from close_calls_pipeline.core.close_api.pages import recover_id, repair_lone_surrogates

from .common import (
    COST_TYPE,
    JSON_TEXT,
    TIMESTAMP,
    RecordError,
    Rejection,
    constant,
    convert_fields,
    table_from_rows,
    to_cost,
    to_int,
    to_str,
    to_str_list,
    to_timestamp,
)
from .utterances import (
    TRANSCRIPT_STRUCT,
    TRANSCRIPT_TYPES,
    UTTERANCES_SCHEMA,
    transcript_rows,
    utterance_table,
)


class _CustomFields(msgspec.Struct):
    custom_fields: msgspec.Raw = msgspec.Raw()


_decode_custom_fields = msgspec.json.Decoder(_CustomFields).decode


def custom_fields_json(raw_call: bytes) -> str | None:
    """A call's `custom_fields` as compact JSON text, or None when absent or null. Read from the
    call's text without decoding anything else (msgspec skips the other fields)."""
    value = _decode_custom_fields(raw_call).custom_fields
    if not value or bytes(value) == b"null":
        return None
    return msgspec.json.format(value, indent=-1).decode()


# --- the call table ----------------------------------------------------------------------------------

# (column, Arrow type, converter) for every documented Call field but one, in table order.
CALL_FIELD_COLUMNS: list[tuple[str, pa.DataType, Callable[[Any], Any]]] = [
    ("_type", pa.string(), to_str),
    ("organization_id", pa.string(), to_str),
    ("lead_id", pa.string(), to_str),
    ("contact_id", pa.string(), to_str),
    ("user_id", pa.string(), to_str),
    ("user_name", pa.string(), to_str),
    ("created_by", pa.string(), to_str),
    ("created_by_name", pa.string(), to_str),
    ("updated_by", pa.string(), to_str),
    ("updated_by_name", pa.string(), to_str),
    ("users", pa.list_(pa.string()), to_str_list),
    ("date_created", TIMESTAMP, to_timestamp),
    ("date_updated", TIMESTAMP, to_timestamp),
    ("activity_at", TIMESTAMP, to_timestamp),
    ("status", pa.string(), to_str),
    ("source", pa.string(), to_str),
    ("direction", pa.string(), to_str),
    ("call_method", pa.string(), to_str),
    ("disposition", pa.string(), to_str),
    ("duration", pa.int32(), to_int),
    ("cost", COST_TYPE, to_cost),
    ("phone", pa.string(), to_str),
    ("local_phone", pa.string(), to_str),
    ("local_phone_formatted", pa.string(), to_str),
    ("local_country_iso", pa.string(), to_str),
    ("remote_phone", pa.string(), to_str),
    ("remote_phone_formatted", pa.string(), to_str),
    ("remote_country_iso", pa.string(), to_str),
    ("note", pa.string(), to_str),
    ("note_html", pa.string(), to_str),
    ("outcome_id", pa.string(), to_str),
    ("recording_url", pa.string(), to_str),
    ("voicemail_url", pa.string(), to_str),
    ("voicemail_duration", pa.int32(), to_int),
    ("dialer_id", pa.string(), to_str),
    ("dialer_saved_search_id", pa.string(), to_str),
    ("sequence_id", pa.string(), to_str),
    ("sequence_name", pa.string(), to_str),
    ("sequence_subscription_id", pa.string(), to_str),
    ("quality_info", pa.string(), to_str),
    ("conversation_type_id", pa.string(), to_str),
]
# and `custom_fields`: free-form JSON, kept as JSON text (see `custom_fields_json`).


CALLS_SCHEMA = pa.schema(
    [("id", pa.string())]
    + [(name, arrow_type) for name, arrow_type, _ in CALL_FIELD_COLUMNS]
    + [
        ("has_recording_transcript", pa.bool_()),
        ("has_voicemail_transcript", pa.bool_()),
        ("recording_summary_text", pa.string()),
        ("recording_summary_html", pa.string()),
        ("voicemail_summary_text", pa.string()),
        ("voicemail_summary_html", pa.string()),
        ("custom_fields", JSON_TEXT),
        ("_raw", JSON_TEXT),
        ("_loaded_at", TIMESTAMP),
        ("_deleted_at", TIMESTAMP),
    ]
)


@dataclass
class TypedCalls:
    calls: pa.Table
    utterances: pa.Table
    rejected: list[Rejection] = field(default_factory=list)
    repaired: int = 0  # calls typed after replacing a lone surrogate escape by U+FFFD

    def ids(self) -> list[str]:
        """Every call id the batch had: typed or rejected."""
        rejected = [r.object_id for r in self.rejected if r.object_id]
        return self.calls.column("id").to_pylist() + rejected

    @classmethod
    def concat(cls, parts: list[TypedCalls]) -> TypedCalls:
        """Batches typed one after another (each with its own, later `_loaded_at`) as one batch
        with one row per id: a repeated call keeps its last copy and that copy's utterances."""
        calls = pa.concat_tables([part.calls for part in parts])
        utterances = pa.concat_tables([part.utterances for part in parts])
        rejected = [rejection for part in parts for rejection in part.rejected]
        keep = _last_copies(calls.column("id"))
        if keep is not None:
            calls = calls.take(keep)
            kept = calls.select(["id", "_loaded_at"]).rename_columns(["call_id", "_loaded_at"])
            utterances = utterances.join(kept, ["call_id", "_loaded_at"], join_type="left semi")
        return cls(calls, utterances, rejected, sum(part.repaired for part in parts))


def _last_copies(ids: pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """Positions of the last occurrence of each id, in order; None when no id repeats."""
    if len(pa.compute.unique(ids)) == len(ids):
        return None
    return pa.array(sorted({call_id: i for i, call_id in enumerate(ids.to_pylist())}.values()))


def _type_call(record: Any) -> tuple[list[Any], list[tuple]]:
    """One call's column values (after `id`, before the metadata columns) and utterance rows."""
    if not isinstance(record, dict):
        raise RecordError("record is not a JSON object")
    call_id = record.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise RecordError("missing or empty `id`")
    values = [call_id, *convert_fields(record, CALL_FIELD_COLUMNS)]
    utterance_rows: list[tuple] = []
    present, summaries = [], []
    for kind, key in TRANSCRIPT_TYPES:
        transcript = record.get(key)
        if transcript is None:
            present.append(False)
            summaries += [None, None]
            continue
        rows, summary_text, summary_html = transcript_rows(call_id, kind, transcript)
        utterance_rows += rows
        present.append(True)
        summaries += [summary_text, summary_html]
    return values + present + summaries, utterance_rows


def type_calls(raw_calls: list[bytes], loaded_at: datetime) -> TypedCalls:
    """Type a batch of calls (each the JSON text Close sent): good ones into Arrow tables, one row
    per id (the last one wins), bad ones into rejections.

    A clean batch (nearly all of them) is parsed in bulk by Arrow's JSON reader against the wire
    schema; anything unusual makes that fast path raise. Records that are not JSON are then set
    aside (repaired or rejected, see the module's docstring) and the rest is tried in bulk
    again; if that still fails, it is typed record by record, which coerces what it can and
    rejects what it cannot, with the reason."""
    try:
        return _type_calls_columnar(raw_calls, loaded_at)
    except (pa.ArrowException, ValueError):
        pass
    readable, rejected, repaired = _readable_calls(raw_calls)
    typed = None
    if readable and (rejected or repaired):
        try:
            typed = _type_calls_columnar(readable, loaded_at)
        except (pa.ArrowException, ValueError):
            typed = None
    if typed is None:
        typed = _type_calls_one_by_one(readable, loaded_at)
    typed.rejected = rejected + typed.rejected
    typed.repaired = repaired
    return typed


def _readable_calls(raw_calls: list[bytes]) -> tuple[list[bytes], list[Rejection], int]:
    """The calls that are JSON (with lone surrogates repaired, in order), rejections of those
    that are not, and how many were repaired."""
    readable, rejected, repaired = [], [], 0
    for raw in raw_calls:
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            fixed, reason = repair_lone_surrogates(raw), str(error)
            if fixed is not None:
                try:
                    orjson.loads(fixed)
                except orjson.JSONDecodeError as still:
                    fixed, reason = None, str(still)
            if fixed is None:
                rejected.append(Rejection.unreadable(raw, f"not valid JSON: {reason}", "acti_"))
                continue
            raw = fixed
            repaired += 1
        readable.append(raw)
    return readable, rejected, repaired


class _Id(msgspec.Struct):
    id: Any = None


_decode_id = msgspec.json.Decoder(_Id).decode


def record_id(raw: bytes) -> str | None:
    """The id of a call as received (the JSON text Close sent), read from its text when it does
    not parse; None when it has none that can be read."""
    try:
        call_id = _decode_id(raw).id
    except msgspec.DecodeError:
        return recover_id(raw, "acti_")
    return call_id if isinstance(call_id, str) and call_id else None


# --- the fast path: Arrow's JSON reader over the whole batch -----------------------------------------

# Calls as they arrive: timestamps and cost as text (cast after), transcripts nested.
WIRE_SCHEMA = pa.schema(
    [("id", pa.string())]
    + [
        (name, pa.string() if arrow_type in (TIMESTAMP, COST_TYPE) else arrow_type)
        for name, arrow_type, _ in CALL_FIELD_COLUMNS
    ]
    + [(key, TRANSCRIPT_STRUCT) for _, key in TRANSCRIPT_TYPES]
)
_JSON_PARSE = pyarrow.json.ParseOptions(
    explicit_schema=WIRE_SCHEMA, unexpected_field_behavior="ignore"
)


def _type_calls_columnar(raw_calls: list[bytes], loaded_at: datetime) -> TypedCalls:
    # The reader wants one JSON object per line; a newline inside a call can only be whitespace.
    text = b"\n".join(raw_calls)
    if text.count(b"\n") != max(0, len(raw_calls) - 1):
        text = b"\n".join(raw.replace(b"\n", b" ") for raw in raw_calls)
    wire = pyarrow.json.read_json(
        io.BytesIO(text),
        read_options=pyarrow.json.ReadOptions(
            block_size=max(1 << 20, max(map(len, raw_calls), default=0) + 1)
        ),
        parse_options=_JSON_PARSE,
    )
    if wire.num_rows != len(raw_calls):
        raise ValueError("a record is not a JSON object")
    ids = wire.column("id").combine_chunks()
    if ids.null_count or (len(ids) and pa.compute.min(pa.compute.utf8_length(ids)).as_py() == 0):
        raise ValueError("a record has no id")
    raw = _binary_array(raw_calls)
    custom_fields = pa.array(map(custom_fields_json, raw_calls), pa.string(), size=len(raw_calls))
    keep = _last_copies(ids)
    if keep is not None:
        wire, ids, raw, custom_fields = (
            wire.take(keep),
            ids.take(keep),
            raw.take(keep),
            custom_fields.take(keep),
        )

    arrays = [ids]
    for name, arrow_type, _ in CALL_FIELD_COLUMNS:
        arrays.append(wire.column(name).cast(arrow_type).combine_chunks())

    presence, summaries, utterance_tables = [], [], []
    for kind, key in TRANSCRIPT_TYPES:
        transcripts = wire.column(key).combine_chunks()
        presence.append(transcripts.is_valid())
        summaries += [transcripts.field("summary_text"), transcripts.field("summary_html")]
        utterance_tables.append(
            utterance_table(ids, kind, transcripts.field("utterances"), loaded_at)
        )

    count = len(ids)
    arrays += (
        presence
        + summaries
        + [
            custom_fields.cast(JSON_TEXT),
            _json_text(raw),
            constant(loaded_at, count, TIMESTAMP),
            pa.nulls(count, TIMESTAMP),
        ]
    )
    return TypedCalls(
        pa.Table.from_arrays(arrays, schema=CALLS_SCHEMA), pa.concat_tables(utterance_tables)
    )


def _binary_array(values: list[bytes]) -> pa.Array:
    """Many bytes objects as one Arrow binary array: one copy of the data, offsets from lengths
    (much cheaper than `pa.array` converting each object)."""
    offsets = pa.array([0, *accumulate(map(len, values))], pa.int64())
    data = pa.py_buffer(b"".join(values))
    return pa.Array.from_buffers(pa.large_binary(), len(values), [None, offsets.buffers()[1], data])


def _json_text(values: pa.Array) -> pa.Array:
    """JSON text (bytes, already valid JSON) as a column of the JSON extension type."""
    return values.cast(pa.string()).cast(JSON_TEXT)


# --- the careful path: one record at a time -----------------------------------------------------------


def _type_calls_one_by_one(raw_calls: list[bytes], loaded_at: datetime) -> TypedCalls:
    typed: dict[str, tuple[list[Any], list[tuple]]] = {}
    rejected: list[Rejection] = []
    for raw in raw_calls:
        text = raw.decode("utf-8", errors="replace")
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            rejected.append(Rejection.unreadable(raw, f"not valid JSON: {error}", "acti_"))
            continue
        try:
            values, utterance_rows = _type_call(record)
        except RecordError as error:
            rejected.append(Rejection.of(record, error, text))
            continue
        typed[values[0]] = (
            values + [custom_fields_json(raw), text, loaded_at, None],
            [row[:-1] + (loaded_at, row[-1]) for row in utterance_rows],
        )
    rows = [values for values, _ in typed.values()]
    utterances = [row for _, rows_of_call in typed.values() for row in rows_of_call]
    return TypedCalls(
        table_from_rows(rows, CALLS_SCHEMA),
        table_from_rows(utterances, UTTERANCES_SCHEMA),
        rejected,
    )
