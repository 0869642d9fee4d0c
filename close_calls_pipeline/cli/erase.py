"""`close-calls erase`: remove the personal data of named calls from the warehouse, on request.

Thin: the erasure is `core.personal_data.erase_calls`. It holds the warehouse's run lock (no run
writes meanwhile), then publishes the read-only copy so readers stop seeing what it removed.
It prints counts only, never a value it removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from close_calls_pipeline.core import config, files, locks, warehouse
from close_calls_pipeline.core.personal_data import HASH_KEY_ENV, erase_calls
from close_calls_pipeline.core.publish import discard_previous_copy, publish_readonly_copy


def erase(
    project_dir: Path,
    *,
    call_ids: list[str],
    lead_ids: list[str],
    phones: list[str],
    out: TextIO,
) -> int:
    """0 when the named calls' personal data is gone (or none was named by what was given),
    1 when another run holds the warehouse, 2 when nothing was named. The warehouse is the one
    `close-calls run` uses in `project_dir`."""
    if not (call_ids or lead_ids or phones):
        out.write("error: name the calls to erase: --call-id, --lead-id or --phone\n")
        return 2
    from close_calls_pipeline.cli.project import settings_of

    settings = settings_of(project_dir)
    path = str(settings.duckdb_path)
    target = settings.warehouse_location
    # Numbers stored as hashes are found by their hash: the key is the runs' key.
    key = os.environ.get(HASH_KEY_ENV, "").encode() or None
    files.private_dir(settings.duckdb_path.parent, settings.file_mode)
    try:
        anchor = warehouse.run_lock_anchor(path, settings.lake)
        with locks.acquire_run_lock(anchor, owner="close-calls erase"):
            if settings.lake is None:  # it holds the data about to be erased: no longer kept
                discard_previous_copy(path)
            con = warehouse.connect(
                target, lock_wait_seconds=settings.lock_wait_seconds, file_mode=settings.file_mode
            )
            try:
                erased = erase_calls(
                    con, call_ids=call_ids, lead_ids=lead_ids, phones=phones, hash_key=key
                )
            finally:
                con.close()
            if erased.calls and settings.lake is None:
                publish_readonly_copy(
                    path,
                    lock_wait_seconds=settings.lock_wait_seconds,
                    file_mode=settings.file_mode,
                    keep_previous=False,
                )
    except locks.RunInProgressError as error:
        out.write(f"error: {error}\n")
        return 1
    out.write(
        f"erased the personal data of {erased.calls} calls in {warehouse.describe(target)}: their phone numbers, "
        f"notes, recording URLs, summaries and transcript text ({erased.utterances} utterance "
        f"texts, {erased.rejected_records} quarantined payloads); ids, dates, disposition, "
        "duration and cost stay.\n"
    )
    if erased.calls and settings.lake is not None:
        out.write(
            "The lake's earlier snapshots still hold it (time travel) until they expire "
            f"({settings.lake_snapshot_retention_days} days, lake_snapshot_retention_days) and "
            "maintenance removes their files. A call that still exists in Close comes back when "
            "it changes there or a reconcile reads it: delete it in Close too, or set a "
            "personal_data policy.\n"
        )
    elif erased.calls:
        out.write(
            f"The read-only copy {config.readonly_copy_path(path)} was published again without "
            "them. A call that still exists in Close comes back when it changes there or a "
            "reconcile reads it: delete it in Close too, or set a personal_data policy.\n"
        )
    elif phones and not key:
        out.write(f"(no call matched; if the warehouse stores phone numbers hashed, set "
                  f"{HASH_KEY_ENV} to the runs' key so the numbers can be found)\n")  # fmt: skip
    return 0
