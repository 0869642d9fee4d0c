"""DuckDB extensions from installed packages, never downloaded.

DuckLake and the catalog and storage extensions it uses ship on the package index as
`duckdb-extension-<name>` for our exact DuckDB version (pyproject.toml pins both). DuckDB itself
looks for installed extensions in `extension_directory`, laid out as `<version>/<platform>/`; the
packages lay their file out without the platform. `extension_directory()` builds that layout with
links to the packaged files, so a plain `LOAD ducklake`, an `ATTACH 'ducklake:...'` (which loads
the extension by itself) and dbt-duckdb (given the directory as a setting) all find them offline.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

import duckdb

from close_calls_pipeline.core.sql_text import literal

# name in DuckDB -> the package that carries it
PACKAGED = {
    "ducklake": "duckdb_extension_ducklake",
    "sqlite_scanner": "duckdb_extension_sqlite_scanner",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}


class ExtensionMissingError(RuntimeError):
    """An extension's package is not installed beside DuckDB, or was built for another DuckDB."""


def _packaged_file(name: str, version: str) -> Path:
    package = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionMissingError(
            f"the DuckDB extension {name} is not installed: pip install "
            f"{package.replace('_', '-')}=={version.lstrip('v')}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = root / "extensions" / version / f"{name}.duckdb_extension"
    if not found.is_file():
        built_for = sorted(p.name for p in (root / "extensions").glob("v*"))
        raise ExtensionMissingError(
            f"the installed {package.replace('_', '-')} is for DuckDB {', '.join(built_for)}, "
            f"not {version}: pip install {package.replace('_', '-')}=={version.lstrip('v')}"
        )
    return found


def _candidate_roots() -> list[Path]:
    """The environment's own folder first (one per venv, matching its packages), else a folder of
    this user's in the temporary directory (a read-only install)."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return [
        Path(sys.prefix) / "share" / "close-calls" / "duckdb-extensions",
        Path(tempfile.gettempdir()) / f"close-calls-duckdb-extensions-{user}",
    ]


@cache
def extension_directory() -> Path:
    """A directory DuckDB can use as `extension_directory`, holding every packaged extension."""
    probe = duckdb.connect()
    try:
        version = probe.execute("PRAGMA version").fetchone()[0]
        platform = probe.execute("PRAGMA platform").fetchone()[0]
    finally:
        probe.close()
    sources = {name: _packaged_file(name, version) for name in PACKAGED}
    last_error: OSError | None = None
    for root in _candidate_roots():
        folder = root / version / platform
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name, source in sources.items():
                link = folder / f"{name}.duckdb_extension"
                if link.is_symlink() and link.resolve() == source.resolve():
                    continue
                temporary = folder / f".{name}.{os.getpid()}.link"
                temporary.unlink(missing_ok=True)
                temporary.symlink_to(source)
                os.replace(temporary, link)  # atomic: a concurrent process sees old or new
            return root
        except OSError as error:
            last_error = error
    raise ExtensionMissingError(f"no writable folder for DuckDB's extension links: {last_error}")


def use_packaged_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Point a connection at the packaged extensions and forbid downloads (loading stays
    automatic: `ATTACH 'ducklake:...'` loads DuckLake and its catalog's extension by itself)."""
    con.execute(f"SET extension_directory = {literal(str(extension_directory()))}")
    con.execute("SET autoinstall_known_extensions = false")


def settings_for_dbt() -> dict[str, str]:
    """The same, as dbt-duckdb profile settings."""
    return {
        "extension_directory": str(extension_directory()),
        "autoinstall_known_extensions": "false",
    }
