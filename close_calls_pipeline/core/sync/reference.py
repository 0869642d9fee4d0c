"""The reference tables: outcomes and users, replaced in full on every run."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import duckdb

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.records import OUTCOMES_COLUMNS, USERS_COLUMNS, type_reference

log = logging.getLogger(__name__)


def refresh_reference_tables(
    client: CloseClient,
    con: duckdb.DuckDBPyConnection,
    tables: Iterable[str] = ("outcomes", "users"),
) -> dict[str, int]:
    """Replace `close.outcomes` / `close.users` with a fresh full copy; returns rows per table."""
    fetchers = {
        "outcomes": (client.list_outcomes, OUTCOMES_COLUMNS),
        "users": (client.list_users, USERS_COLUMNS),
    }
    run_id, counts = uuid.uuid4().hex, {}
    for name in tables:
        fetch, columns = fetchers[name]
        started = time.monotonic()
        now = datetime.now(UTC)
        rows, rejected = type_reference(fetch(), columns, now)
        with warehouse.transaction(con):
            warehouse.replace_table(con, name, rows)
            warehouse.record_rejections(con, run_id, name.rstrip("s"), rejected, now)
        counts[name] = rows.num_rows
        log.info("refreshed close.%s: %d rows (%d rejected) in %.2f s", name, rows.num_rows,
                 len(rejected), time.monotonic() - started)  # fmt: skip
    return counts
