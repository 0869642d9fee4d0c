"""Modes of the files and folders the product creates: owner-only unless shared with a group.

The warehouse, its copies and the report hold personal data, so everything the product creates
is private (files 0600, folders 0700) by default; `file_mode: group` shares them with the
owner's group (0640 / 0750), e.g. for notebooks run by other accounts of that group.

Two mechanisms, because DuckDB creates its own files (the WAL comes and goes with checkpoints):
* `restrictive_umask`, a process umask set while a run writes (by the Dagster warehouse resource
  and the CLI), so whatever DuckDB, dbt or Dagster create meanwhile is born with the mode;
* `private_dir` / `restrict` on the folders and files the product names, which also fixes a
  file left with a looser mode by an earlier version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE, GROUP = "private", "group"
# file_mode -> (file mode, folder mode, umask)
MODES: dict[str, tuple[int, int, int]] = {
    PRIVATE: (0o600, 0o700, 0o077),
    GROUP: (0o640, 0o750, 0o027),
}


def check_file_mode(value: str) -> str:
    if value not in MODES:
        raise ValueError(f"file_mode must be one of {', '.join(MODES)}, got {value!r}")
    return value


def file_bits(file_mode: str) -> int:
    return MODES[check_file_mode(file_mode)][0]


def dir_bits(file_mode: str) -> int:
    return MODES[check_file_mode(file_mode)][1]


def private_dir(path: str | os.PathLike, file_mode: str = PRIVATE) -> Path:
    """Create a folder (and missing parents) with the folder mode. Folders that already existed
    are left as they are (they may be the user's: a home, a shared folder); the files the
    product writes in them get the file mode (`restrict`)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, dir_bits(file_mode))
    return path


def restrict(path: str | os.PathLike, file_mode: str = PRIVATE, *, read_only: bool = False) -> None:
    """Set a file the product wrote to the file mode (without write bits when `read_only`)."""
    bits = file_bits(file_mode) & (0o444 if read_only else 0o777)
    path = Path(path)
    if path.exists() and path.stat().st_uid == os.getuid():
        os.chmod(path, bits)


def set_umask(file_mode: str = PRIVATE) -> int:
    """Set the process umask for `file_mode`; returns the previous one (to restore it)."""
    return os.umask(MODES[check_file_mode(file_mode)][2])


@contextmanager
def restrictive_umask(file_mode: str = PRIVATE) -> Iterator[None]:
    previous = set_umask(file_mode)
    try:
        yield
    finally:
        os.umask(previous)
