"""Reference objects: outcomes and users, small lists typed one record at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from close_calls_pipeline.core.close_api.pages import Unreadable

from .common import (
    JSON_TEXT,
    TIMESTAMP,
    RecordError,
    Rejection,
    convert_fields,
    table_from_rows,
    to_str,
    to_str_list,
    to_timestamp,
)

OUTCOMES_COLUMNS = [
    ("id", pa.string(), to_str),
    ("organization_id", pa.string(), to_str),
    ("name", pa.string(), to_str),
    ("description", pa.string(), to_str),
    ("type", pa.string(), to_str),
    ("applies_to", pa.list_(pa.string()), to_str_list),
    ("date_created", TIMESTAMP, to_timestamp),
    ("date_updated", TIMESTAMP, to_timestamp),
    ("created_by", pa.string(), to_str),
    ("updated_by", pa.string(), to_str),
]

USERS_COLUMNS = [
    ("id", pa.string(), to_str),
    ("email", pa.string(), to_str),
    ("first_name", pa.string(), to_str),
    ("last_name", pa.string(), to_str),
    ("image", pa.string(), to_str),
    ("date_created", TIMESTAMP, to_timestamp),
    ("date_updated", TIMESTAMP, to_timestamp),
]


def type_reference(
    records: list[Any], columns: list[tuple[str, pa.DataType, Callable]], loaded_at: datetime
) -> tuple[pa.Table, list[Rejection]]:
    """Type outcomes or users (small lists): same contract as `type_calls`."""
    rows, rejected = [], []
    for record in records:
        if isinstance(record, Unreadable):
            prefix = "outcome_" if columns is OUTCOMES_COLUMNS else "user_"
            rejected.append(Rejection.unreadable(record.raw, "not valid JSON", prefix))
            continue
        try:
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise RecordError("missing or empty `id`")
            row = convert_fields(record, columns)
        except RecordError as error:
            rejected.append(Rejection.of(record, error))
            continue
        rows.append(row + [orjson.dumps(record).decode(), loaded_at])
    schema = pa.schema(
        [(n, t) for n, t, _ in columns] + [("_raw", JSON_TEXT), ("_loaded_at", TIMESTAMP)]
    )
    return table_from_rows(rows, schema), rejected
