"""Starting over: the warehouse and the files that go with it are moved aside, never deleted.

A warehouse belongs to one Close organization (`core/identity.py`). To sync another one into
the same path, the old warehouse is renamed to `<name>.<UTC timestamp>.bak.duckdb` beside
itself, with its WAL (renamed to match, so DuckDB opens the backup whole), its read-only copy
and any other file the caller names (the report); renaming it back restores it. The hidden
previous copy (`core/publish.py`) is deleted: it is an older state of the copy moved aside.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from close_calls_pipeline.core import config, locks, publish


def backup_name(path: Path, stamp: str) -> Path:
    """`close_calls.duckdb` -> `close_calls.20261206T170501Z.bak.duckdb` (same folder)."""
    return path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")


def move_warehouse_aside(
    warehouse_path: str | Path, also: Iterable[str | Path] = (), now: datetime | None = None
) -> list[tuple[Path, Path]]:
    """Rename the warehouse, its WAL, its read-only copy (and `also`) to backup names; returns
    (from, to) for each file moved (none: there was nothing to move). Raises
    `locks.RunInProgressError` while a run holds the warehouse, and `FileExistsError` rather
    than overwrite a backup."""
    path = Path(warehouse_path).resolve()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    moves: list[tuple[Path, Path]] = []
    for database in (path, config.readonly_copy_path(path)):
        moved = backup_name(database, stamp)
        moves += [(database, moved), (Path(f"{database}.wal"), Path(f"{moved}.wal"))]
    moves += [(Path(other), backup_name(Path(other), stamp)) for other in also]
    with locks.acquire_run_lock(path, owner="close-calls start-over"):
        moves = [(source, target) for source, target in moves if source.exists()]
        for _, target in moves:
            if target.exists():
                raise FileExistsError(f"{target} exists already: not overwriting a backup")
        for source, target in moves:
            source.rename(target)
        publish.discard_previous_copy(path)  # an older copy of the moved copy's warehouse
    return moves
