"""A warehouse belongs to one Close organization.

Its first run records the organization the API answers for (`GET /me/`) in
`close.warehouse_identity`; every later run checks, before it writes anything, that its API
answers for the same one, and fails at once, naming both, when it does not. Without that, a run
missing its key (the embedded sandbox) or holding another organization's key would land that
organization's calls and reference tables in the warehouse, and a reconcile would soft-delete
every real call. `check_organization` is the one check; the Dagster warehouse resource calls it
when a run starts, so every job, schedule, `dg launch` and `close-calls run` goes through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from close_calls_pipeline.core import files, locks, warehouse
from close_calls_pipeline.core.lake import Lake
from close_calls_pipeline.core.sql_text import literal

log = logging.getLogger(__name__)

START_OVER = "close-calls start-over"


@dataclass(frozen=True)
class Organization:
    """The Close organization an API (or a warehouse) is for."""

    id: str
    name: str | None
    is_sandbox: bool  # the embedded sandbox Close API of a run without a key

    def describe(self) -> str:
        """`Close organization Acme (orga_…)`, or `the embedded sandbox (organization orga_…)`."""
        if self.is_sandbox:
            return f"the embedded sandbox (organization {self.id})"
        return f"Close organization {self.name or '(name unknown)'} ({self.id})"

    def same_as(self, other: Organization) -> bool:
        """The same organization, reached the same way: a keyed API never matches the embedded
        sandbox, even if a test sandbox answered with the same id."""
        return self.id == other.id and self.is_sandbox == other.is_sandbox


class OrganizationUnknownError(RuntimeError):
    """`/me/` does not say which one organization the API key is for."""


class WrongOrganizationError(RuntimeError):
    """The warehouse belongs to another organization than the one the API answers for."""


def organization_from_me(me: object, *, is_sandbox: bool) -> Organization:
    """The organization an API key is for, from the `/me/` answer (the key's user).

    `/me/` lists every organization of the user (`organizations: [{id, name, ...}]`), while a
    key acts for one. The choice is deterministic: the organization named by a top-level
    `organization_id` when the answer has one; else the only organization listed; else the only
    one of them the user's `memberships` name. Anything else fails: guessing could bind the
    warehouse to the wrong organization."""
    if not isinstance(me, dict):
        raise OrganizationUnknownError("GET /me/ did not answer with a user object")
    listed = [o for o in me.get("organizations") or [] if isinstance(o, dict) and o.get("id")]
    names = {str(o["id"]): o.get("name") for o in listed}
    chosen: str | None = None
    if me.get("organization_id"):
        chosen = str(me["organization_id"])
    elif len(names) == 1:
        (chosen,) = names
    else:
        members = {
            str(m.get("organization_id"))
            for m in me.get("memberships") or []
            if isinstance(m, dict) and str(m.get("organization_id")) in names
        }
        if len(members) == 1:
            (chosen,) = members
    if chosen is None:
        listed_text = ", ".join(f"{name} ({oid})" for oid, name in names.items()) or "none"
        raise OrganizationUnknownError(
            f"GET /me/ does not say which organization the API key is for (organizations of "
            f"its user: {listed_text}); use a key whose user belongs to that one organization"
        )
    return Organization(chosen, names.get(chosen), is_sandbox)


def check_organization(
    path: warehouse.Target,
    api: Organization,
    *,
    api_base_url: str | None,
    lock_wait_seconds: float | None = None,
    file_mode: str = files.PRIVATE,
) -> Organization:
    """Check that the warehouse at `path` (a file, or a `Lake`) belongs to `api`'s organization,
    before anything is written; raise `WrongOrganizationError` (one line: both organizations and
    the fix) if not.

    A new or empty warehouse is claimed for `api` (the identity row, in its own transaction,
    before any data: a run killed after it leaves an empty warehouse, which any organization
    may claim again). A warehouse written by an earlier release, with data but no identity, is
    adopted only when the organization ids of its calls and outcomes are all `api`'s. The caller
    holds the warehouse's run lock, so nothing writes between the check and the claim."""
    held, data_rows, found_ids = _read_holdings(path, lock_wait_seconds)
    if held is not None and held.same_as(api):
        return held
    if data_rows:
        if held is not None:
            raise WrongOrganizationError(_mismatch(path, held.describe(), api))
        if found_ids != [api.id]:
            holds = (
                "organization " + ", ".join(found_ids)
                if found_ids
                else "data without an organization id"
            )
            raise WrongOrganizationError(
                _mismatch(path, f"{holds} (written by an earlier release)", api)
            )
        log.warning("the warehouse %s (written by an earlier release) holds calls of %s only: "
                    "recording it as that organization's", warehouse.describe(path),
                    api.describe())  # fmt: skip
    _claim(path, api, api_base_url, lock_wait_seconds, file_mode)
    return api


def _mismatch(path: warehouse.Target, holds: str, api: Organization) -> str:
    if api.is_sandbox:
        answers = (
            f"this run has no CLOSE_API_KEY, so it would sync {api.describe()}. Set "
            "CLOSE_API_KEY to the key of the warehouse's organization"
        )
    else:
        answers = (
            f"the API key answers for {api.describe()}. Use the key of the warehouse's organization"
        )
    if isinstance(path, Lake):
        start_anew = "another lake (CLOSE_CALLS_LAKE_CATALOG and CLOSE_CALLS_LAKE_DATA_PATH)"
    else:
        start_anew = f"`{START_OVER}` (it moves this one aside) or another CLOSE_CALLS_DUCKDB"
    return (
        f"the warehouse {warehouse.describe(path)} holds {holds}; {answers}, or start a new "
        f"warehouse with {start_anew}. Nothing was written."
    )


def _read_holdings(
    path: warehouse.Target, lock_wait_seconds: float | None
) -> tuple[Organization | None, int, list[str]]:
    """The recorded organization, how many data rows there are, and the organization ids of
    the calls and outcomes, read without writing to a file (a file that does not exist holds
    nothing). A lake is opened as the run will open it (its schema made if it is new)."""
    if isinstance(path, Lake):
        con = warehouse.connect(path)
    else:
        if not Path(path).exists():
            return None, 0, []
        con = duckdb.connect()
        try:
            locks.wait_for_warehouse(
                lambda: con.execute(f"ATTACH {literal(str(path))} AS held (READ_ONLY)"),
                path,
                lock_wait_seconds,
            )
            con.execute("USE held")
        except BaseException:
            con.close()
            raise
    try:
        tables = {
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = current_database() AND table_schema = 'close'"
            ).fetchall()
        }
        if "calls" not in tables:
            return None, 0, []
        held = None
        if "warehouse_identity" in tables:
            row = con.execute(
                "SELECT organization_id, organization_name, is_sandbox "
                "FROM close.warehouse_identity LIMIT 1"
            ).fetchone()
            held = Organization(row[0], row[1], bool(row[2])) if row else None
        (data_rows, found_ids) = warehouse.run_script(con, "warehouse_holdings.sql")[0][0]
        return held, int(data_rows), list(found_ids or [])
    finally:
        con.close()


def _claim(
    path: warehouse.Target,
    api: Organization,
    api_base_url: str | None,
    lock_wait_seconds: float | None,
    file_mode: str,
) -> None:
    con = warehouse.connect(path, lock_wait_seconds=lock_wait_seconds, file_mode=file_mode)
    try:
        with warehouse.transaction(con):
            con.execute("DELETE FROM close.warehouse_identity")
            con.execute(
                "INSERT INTO close.warehouse_identity VALUES (?, ?, ?, ?, ?)",
                [api.id, api.name, api.is_sandbox, api_base_url, datetime.now(UTC)],
            )
    finally:
        con.close()
    log.info("the warehouse %s is now recorded as %s's", warehouse.describe(path), api.describe())
