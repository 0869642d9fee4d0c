"""What typing every kind of record shares: Arrow types, converters of JSON values, rejections,
and building a typed table from rows of Python values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute

from close_calls_pipeline.core.close_api.pages import recover_id

TIMESTAMP = pa.timestamp("us", tz="UTC")
COST_TYPE = pa.decimal128(18, 6)
# JSON text as Arrow's JSON extension type: DuckDB lands it as JSON without parsing it again.
JSON_TEXT = pa.json_(pa.string())
MAX_COST_CENTS = Decimal("1e12")


class RecordError(ValueError):
    """A record (or one of its fields) that cannot be typed; the message is the rejection reason."""


# --- scalar converters: value as received -> typed Python value (or RecordError) -------------------


def to_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def to_timestamp(value: Any) -> datetime | None:
    """ISO 8601 with or without offset (naive means UTC, as Close documents), normalised to UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"timestamp is not a string: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"unparseable timestamp {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise RecordError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise RecordError(f"not an integer: {value!r}")


def to_cost(value: Any) -> Decimal | None:
    """Close's `cost`: US cents as a decimal string. Kept exact; more than 6 decimals is refused."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError(f"cost is not a number: {value!r}")
    try:
        amount = Decimal(value if isinstance(value, (str, int)) else str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise RecordError(f"cost is not a number: {value!r}") from None
    if not amount.is_finite() or abs(amount) >= MAX_COST_CENTS:
        raise RecordError(f"cost is out of range: {value!r}")
    if amount.as_tuple().exponent < -6:
        raise RecordError(f"cost has more than 6 decimal places: {value!r}")
    return amount


def to_str_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(f"expected a list of ids, got {type(value).__name__}")
    return [to_str(item) for item in value]


def to_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"not a number: {value!r}")
    return float(value)


@dataclass
class Rejection:
    """A record that could not be typed: quarantined with its reason and its text as received."""

    object_id: str | None
    reason: str
    payload: str  # the record's JSON text (bytes that are not UTF-8 shown as U+FFFD)
    raw: bytes | None = None  # the bytes as received, when they are not valid JSON text

    @classmethod
    def of(cls, record: Any, error: RecordError, payload: str | None = None) -> Rejection:
        object_id = record.get("id") if isinstance(record, dict) else None
        return cls(
            object_id if isinstance(object_id, str) else None,
            str(error),
            payload if payload is not None else orjson.dumps(record).decode(),
        )

    @classmethod
    def unreadable(cls, raw: bytes, reason: str, id_prefix: str) -> Rejection:
        """A record that is not JSON: kept as received, with the id its text still shows."""
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"{reason} (bytes that are not UTF-8 at {error.start})"
        return cls(recover_id(raw, id_prefix), reason, raw.decode("utf-8", errors="replace"), raw)


def convert_fields(record: dict, columns: list[tuple[str, pa.DataType, Callable]]) -> list[Any]:
    """Each column's converter applied to the record's value; errors name the field."""
    values = []
    for name, _, convert in columns:
        try:
            values.append(convert(record.get(name)))
        except RecordError as error:
            raise RecordError(f"{name}: {error}") from None
    return values


def table_from_rows(rows: list[list[Any]] | list[tuple], schema: pa.Schema) -> pa.Table:
    """Rows of Python values (one per schema field) into a typed Arrow table."""
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return pa.Table.from_arrays(
        [pa.array(column, type=schema.field(i).type) for i, column in enumerate(columns)],
        schema=schema,
    )


def constant(value: Any, count: int, arrow_type: pa.DataType) -> pa.Array:
    """`count` copies of one value, built in Arrow rather than from a Python list."""
    return pa.compute.fill_null(pa.nulls(count, arrow_type), pa.scalar(value, arrow_type))
