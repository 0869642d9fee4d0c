"""A reader of a DuckLake in its own process, as a notebook on another machine would be (a test
helper).

    python tests/helpers/lake_reader.py CATALOG DATA_PATH

Attaches the lake READ_ONLY (`core.lake.connect_lake`) and, until its stdin closes, reads it
in a loop, printing one JSON line per read: what it saw, or the error it met. Each read is one
statement, so one snapshot: the live calls, the utterances, the utterances the calls' own
payloads list (equal unless a batch's calls are visible without their utterances, or the
reverse), repeated ids, and the committed sync runs.
"""

from __future__ import annotations

import json
import sys
import threading

from close_calls_pipeline.core.lake import Lake, connect_lake

READ = """
SELECT
    (SELECT count(*) FROM close.calls WHERE _deleted_at IS NULL),
    (SELECT count(*) FROM close.call_transcript_utterances),
    (SELECT coalesce(sum(
        coalesce(json_array_length(_raw, '$.recording_transcript.utterances'), 0)
        + coalesce(json_array_length(_raw, '$.voicemail_transcript.utterances'), 0)), 0)
     FROM close.calls WHERE _deleted_at IS NULL),
    (SELECT count(*) - count(DISTINCT id) FROM close.calls),
    (SELECT count(*) FROM close.sync_state)
"""


def main() -> None:
    lake = Lake(sys.argv[1], sys.argv[2])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    con = connect_lake(lake, read_only=True)
    print(json.dumps({"attached": True}), flush=True)
    while not stop.is_set():
        try:
            calls, utterances, listed, repeated, runs = con.execute(READ).fetchone()
            seen = {"calls": calls, "utterances": utterances, "listed_utterances": int(listed),
                    "repeated_ids": repeated, "runs": runs}  # fmt: skip
        except Exception as error:  # noqa: BLE001 - what the test asserts never happens
            seen = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(seen), flush=True)
        stop.wait(0.05)
    con.close()


if __name__ == "__main__":
    main()
