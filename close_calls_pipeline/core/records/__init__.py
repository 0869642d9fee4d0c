"""Typing Close records into Arrow tables with explicit schemas, by kind of object: `calls`,
their transcripts' `utterances`, and the `reference` objects (outcomes, users); `common` holds
the converters and rejections they share.

Calls arrive as the JSON text Close sent. A batch is parsed in bulk by Arrow's JSON reader (C++,
off the GIL); if anything in it is unusual, each record is checked and converted in Python, which
tells exactly which record is bad. A record that cannot be typed is returned as a rejection with
its reason instead of failing the batch. The Arrow schemas mirror the DuckDB tables in
`core/sql/schema.sql`.

Text that is not JSON a call can be read from: a lone surrogate escape (`"\\ud800"`: JSON's
grammar allows it, but no Unicode text can hold it) is replaced by U+FFFD and the call lands,
since nothing else is lost (the repair is counted); bytes that are not UTF-8, or a record cut in
the middle, are quarantined with their bytes as received and the id read from the text where it
can be, so that the sync knows the call exists.
"""

from .calls import (
    CALL_FIELD_COLUMNS,
    CALLS_SCHEMA,
    WIRE_SCHEMA,
    TypedCalls,
    custom_fields_json,
    record_id,
    type_calls,
)
from .common import (
    COST_TYPE,
    JSON_TEXT,
    MAX_COST_CENTS,
    TIMESTAMP,
    RecordError,
    Rejection,
    constant,
    to_cost,
    to_float,
    to_int,
    to_str,
    to_str_list,
    to_timestamp,
)
from .reference import OUTCOMES_COLUMNS, USERS_COLUMNS, type_reference
from .utterances import (
    TRANSCRIPT_STRUCT,
    TRANSCRIPT_TYPES,
    UTTERANCE_STRUCT,
    UTTERANCES_SCHEMA,
)

__all__ = [
    "CALLS_SCHEMA",
    "CALL_FIELD_COLUMNS",
    "COST_TYPE",
    "JSON_TEXT",
    "MAX_COST_CENTS",
    "OUTCOMES_COLUMNS",
    "TIMESTAMP",
    "TRANSCRIPT_STRUCT",
    "TRANSCRIPT_TYPES",
    "USERS_COLUMNS",
    "UTTERANCES_SCHEMA",
    "UTTERANCE_STRUCT",
    "WIRE_SCHEMA",
    "RecordError",
    "Rejection",
    "TypedCalls",
    "constant",
    "custom_fields_json",
    "record_id",
    "to_cost",
    "to_float",
    "to_int",
    "to_str",
    "to_str_list",
    "to_timestamp",
    "type_calls",
    "type_reference",
]
