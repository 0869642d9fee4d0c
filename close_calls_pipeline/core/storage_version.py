"""A warehouse file written by a newer DuckDB than ours (DuckDB 2.0 files, on the 1.5 line).

DuckDB stamps each file with a storage version and refuses one newer than it can read, with a
paragraph that says neither which DuckDB wrote the file nor what to do about it here. The file's
first header names the DuckDB that wrote it; `raise_if_written_by_newer_duckdb` turns the
refusal into one line that does (docs/lake.md#duckdb-version).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import duckdb

# DuckDB's main file header: an 8-byte checksum, the magic bytes, the storage version (a
# little-endian uint64), four uint64 flags, then the writer's version and git hash (32 bytes
# each, zero-padded).
_MAGIC = b"DUCK"
_MAGIC_AT = 8
_VERSION_AT = 12
_WRITER_AT = 52
_WRITER_BYTES = 32
HEADER_BYTES = _WRITER_AT + _WRITER_BYTES

# DuckDB's refusal: "Trying to read a database file with version number 999, but we can only
# read versions between 64 and 68."
_TOO_NEW = re.compile(r"database file with version number (\d+), but we can only read", re.I)


@dataclass(frozen=True)
class FileHeader:
    storage_version: int
    written_by: str  # e.g. "v2.0.1"; empty when the writer did not record it


def read_header(path: str | Path) -> FileHeader | None:
    """The storage version and writer of a DuckDB file (None: not a DuckDB file, or unreadable)."""
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_BYTES)
    except OSError:
        return None
    if len(head) < HEADER_BYTES or head[_MAGIC_AT : _MAGIC_AT + len(_MAGIC)] != _MAGIC:
        return None
    (version,) = struct.unpack_from("<Q", head, _VERSION_AT)
    writer = head[_WRITER_AT : _WRITER_AT + _WRITER_BYTES].split(b"\0", 1)[0]
    return FileHeader(version, writer.decode("ascii", errors="replace"))


class WarehouseFromNewerDuckDBError(RuntimeError):
    """The warehouse file was written by a newer DuckDB than the one installed: it says what to
    do, in one line (`close-calls run` and the Dagster UI show an error's first line)."""

    def __init__(self, path: str | Path, header: FileHeader | None, storage_version: int):
        self.path = str(path)
        self.written_by = header.written_by if header and header.written_by else "a newer DuckDB"
        super().__init__(
            f"the warehouse {self.path} was written by DuckDB {self.written_by} (storage "
            f"version {storage_version}), which this DuckDB ({duckdb.__version__}) cannot read: "
            "run `close-calls start-over` to move it aside (kept, not deleted), and the next run "
            "backfills a new file; or use a lake (lake_catalog, lake_data_path: docs/lake.md)"
        )


def raise_if_written_by_newer_duckdb(path: str | Path, error: BaseException) -> None:
    """Raise `WarehouseFromNewerDuckDBError` when `error` is DuckDB refusing `path` for its
    storage version; otherwise return (the caller re-raises `error`)."""
    refused = _TOO_NEW.search(str(error))
    if refused is None:
        return
    raise WarehouseFromNewerDuckDBError(path, read_header(path), int(refused.group(1))) from None
