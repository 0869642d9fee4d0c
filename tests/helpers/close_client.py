"""Reading calls through the client's public API, the way the tests want them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import orjson

from close_calls_pipeline.core.close_api import CloseClient


def call_window(client: CloseClient, start: datetime, end: datetime) -> Iterator[list[bytes]]:
    """The pages (calls as the JSON text Close sent) of every call created in [start, end)."""
    for page in client.iter_call_window_pages(start, end):
        yield page.calls


def get_call(client: CloseClient, call_id: str) -> dict | None:
    """One call with every field the client asks for, or None when Close has no such call."""
    calls = [orjson.loads(call) for page in client.iter_calls_by_ids([call_id]) for call in page]
    return calls[0] if calls else None
