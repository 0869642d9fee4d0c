"""Quoting for the few SQL statements that cannot take parameters (ATTACH, USE, SET)."""

from __future__ import annotations


def literal(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
