"""A sync in a child process that kills itself with SIGKILL at a chosen point (a test helper).

    python tests/helpers/sync_child.py BASE_URL API_KEY DB_PATH OPTIONS_JSON [STAGE NTH]

DB_PATH is a DuckDB file, or a DuckLake as JSON: {"catalog": ..., "data_path": ...}.

Runs `sync_calls` with the options given and, when STAGE is given, `os.kill(os.getpid(),
SIGKILL)` the NTH time the sync reaches that stage ("page", "landed", "state", "committed"):
nothing is flushed, closed or rolled back, as with `kill -9` or a machine that loses power.
Prints the summary as JSON when the sync completes.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api import CloseClient
from close_calls_pipeline.core.lake import Lake
from close_calls_pipeline.core.sync import SyncOptions, sync_calls


def main() -> None:
    base_url, api_key, db_path, options = sys.argv[1:5]
    stage, nth = (sys.argv[5], int(sys.argv[6])) if len(sys.argv) > 6 else (None, 0)
    reached = 0

    def on_stage(name: str) -> None:
        nonlocal reached
        if name == stage:
            reached += 1
            if reached == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    target = Lake(**json.loads(db_path)) if db_path.startswith("{") else db_path
    con = warehouse.connect(target)
    with CloseClient(api_key, base_url) as client:
        summary = sync_calls(client, con, SyncOptions(**json.loads(options)), on_stage=on_stage)
    con.close()
    print(json.dumps(summary.as_dict(), default=str))


if __name__ == "__main__":
    main()
