"""Buffering fetched calls and typing them into landing batches. No I/O: pages in, batches out.

Calls are typed as they arrive, a typing step at a time (mostly Arrow's JSON reader, which
releases the GIL), so typing overlaps with fetching and with landing the previous batch. A batch
is cut at a number of calls (one DuckDB row group, which DuckDB writes straight to the file) or of
bytes of call text, whichever comes first: that bounds memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from close_calls_pipeline.core.personal_data import CallPolice
from close_calls_pipeline.core.records import TypedCalls, type_calls
from close_calls_pipeline.core.warehouse import Window

TYPING_STEP, TYPING_STEP_BYTES = 2_048, 8 << 20  # calls typed at a time (or this much text)


@dataclass(frozen=True)
class Batch:
    """Typed calls for one landing transaction, and the walk windows it completes."""

    typed: TypedCalls
    windows_done: list[Window] = field(default_factory=list)
    # Walk windows whose pages did not come newest first: their progress cannot be told by
    # date_created, so they resume from their start.
    out_of_order: frozenset[Window] = frozenset()
    # The walk's progress this batch makes, per window (warehouse.WINDOW_PROGRESS rows).
    progress: pa.Table | None = None

    def ids(self) -> list[str]:
        """Every call id the batch holds: typed, or quarantined with an id read from its text."""
        return self.typed.ids()


class Batcher:
    """Collects pages of raw calls (the JSON text as received) and cuts typed batches.

    A window is complete in the first batch cut after `window_done`: less than a typing step is
    left untyped after each page, a step types the oldest calls first, and a batch is only cut
    after a step (or, by `rest`, with everything)."""

    def __init__(self, batch_size: int, batch_bytes: int, police: CallPolice | None = None) -> None:
        self.batch_size, self.batch_bytes = batch_size, batch_bytes
        self.police = police or CallPolice()
        self.typing_step = min(TYPING_STEP, batch_size)
        self.typing_step_bytes = min(TYPING_STEP_BYTES, batch_bytes)
        self.raw_calls: list[bytes] = []  # fetched, not yet typed
        self.raw_bytes = 0
        self.typed: list[TypedCalls] = []  # typed, not yet in a batch
        self.typed_count = self.typed_bytes = 0  # raw calls (and their text) in self.typed
        self.windows_done: list[Window] = []
        self.out_of_order: set[Window] = set()
        self.loaded_at = datetime.min.replace(tzinfo=UTC)

    def add(self, page: list[bytes]) -> Batch | None:
        """Take a page; returns a batch when one is full."""
        self.raw_calls += page
        self.raw_bytes += sum(map(len, page))
        while len(self.raw_calls) >= self.typing_step or self.raw_bytes >= self.typing_step_bytes:
            self._type_step()
        if self.typed_count >= self.batch_size or self.typed_bytes >= self.batch_bytes:
            return self._cut()
        return None

    def window_done(self, window: Window) -> None:
        """Every page of `window` has been added."""
        self.windows_done.append(window)

    def window_out_of_order(self, window: Window) -> None:
        self.out_of_order.add(window)

    def rest(self) -> Batch:
        """Everything added and not yet in a batch, typed (possibly an empty batch)."""
        while self.raw_calls:
            self._type_step()
        return self._cut()

    def _type_step(self) -> None:
        """Type the oldest calls, a step's worth. Each step gets its own, later `_loaded_at`:
        the copies of a repeated call are told apart by it (see `TypedCalls.concat`)."""
        self.loaded_at = max(datetime.now(UTC), self.loaded_at + timedelta(microseconds=1))
        raw = self.raw_calls[: self.typing_step]
        del self.raw_calls[: self.typing_step]
        size = sum(map(len, raw))
        self.typed.append(self._type(raw))
        self.raw_bytes -= size
        self.typed_count += len(raw)
        self.typed_bytes += size

    def _type(self, raw: list[bytes]) -> TypedCalls:
        """The one place fetched calls become rows: the personal_data policy is applied to each
        record first, so the typed columns, `_raw` and quarantined payloads all come from the
        policed record."""
        policed, repaired = self.police.raw_calls(raw)
        typed = type_calls(policed, self.loaded_at)
        typed.rejected = [self.police.rejection(r) for r in typed.rejected]
        typed.repaired += repaired
        return typed

    def _cut(self) -> Batch:
        typed = TypedCalls.concat(self.typed or [type_calls([], self.loaded_at)])
        batch = Batch(typed, self.windows_done, frozenset(self.out_of_order))
        self.typed, self.typed_count, self.typed_bytes, self.windows_done = [], 0, 0, []
        return batch
