"""The benchmarks' child processes: the sandbox in one (so it does not share the benchmarked
process's GIL), and each sync in a fresh one (so its peak RSS is its own)."""

from __future__ import annotations

import multiprocessing as mp
import random
import resource
import time

from close_calls_pipeline.core import config
from close_calls_pipeline.core.lake import Lake

API_KEY = "bench-key"


# --- the sandbox in a child process, driven over a pipe ------------------------------------------


def _sandbox_process(conn, calls: int, seed: int, server_kwargs: dict) -> None:
    from close_calls_pipeline.sandbox import SandboxServer, SandboxStore

    store = SandboxStore(calls=calls, seed=seed)
    server = SandboxServer(store, api_key=API_KEY, port=0, **server_kwargs).start()
    conn.send(server.base_url)
    while True:
        command, argument = conn.recv()
        if command == "stop":
            server.stop()
            conn.send(None)
            return
        if command == "stats":
            stats = server.stats()
            conn.send(
                {
                    "requests": stats["requests"],
                    "429": sum(
                        n for (_, status), n in stats["by_endpoint"].items() if status == 429
                    ),
                }
            )
        elif command == "reset_stats":
            server.reset_stats()
            conn.send(None)
        elif command == "set":
            for name, value in argument.items():
                setattr(server, name, value)
            conn.send(None)
        elif command == "mutate":  # one round of activity, then the clock moves on
            changes = store.mutate_random(
                random.Random(argument["seed"]),
                new=argument["new"],
                updated=argument["updated"],
                deleted=argument["deleted"],
            )
            store.advance(argument["advance"])
            conn.send(sum(map(len, changes.values())))
        elif command == "update_share":
            ids = list(store.truth())
            chosen = random.Random(seed).sample(ids, int(len(ids) * argument))
            store.advance(60)
            for call_id in chosen:
                store.update_call(call_id, note="benchmark edit")
            store.advance(60)
            conn.send(len(chosen))


class SandboxProcess:
    def __init__(self, calls: int, seed: int = 42, **server_kwargs):
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_sandbox_process, args=(child, calls, seed, server_kwargs), daemon=True
        )
        started = time.perf_counter()
        self._process.start()
        self.base_url = self._conn.recv()
        self.build_seconds = time.perf_counter() - started

    def call(self, command: str, argument=None):
        self._conn.send((command, argument))
        return self._conn.recv()

    def stop(self) -> None:
        self.call("stop")
        self._process.join(10)


# --- one sync in a fresh process ---------------------------------------------------------------------


def _sync_process(conn, base_url: str, db_path: str, workers: int, memory_limit: str) -> None:
    from close_calls_pipeline.core import warehouse
    from close_calls_pipeline.core.close_api import CloseClient
    from close_calls_pipeline.core.sync import SyncOptions, sync_calls

    con = warehouse.connect(db_path, memory_limit=memory_limit)
    started = time.perf_counter()
    with CloseClient(API_KEY, base_url, pool_size=workers) as client:
        summary = sync_calls(client, con, SyncOptions(workers=workers))
    con.close()  # includes DuckDB's final checkpoint in the time
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = dict(summary.as_dict(), cpu_seconds=usage.ru_utime + usage.ru_stime)
    conn.send((summary, elapsed, usage.ru_maxrss / 1024))


def run_sync_in_process(
    base_url: str,
    db_path: str | Lake,
    workers: int,
    memory_limit: str = config.DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> tuple[dict, float, float]:
    """(the sync's summary, its seconds, its peak RSS in MB); `db_path` a file or a lake."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=_sync_process, args=(child, base_url, db_path, workers, memory_limit)
    )
    process.start()
    while not parent.poll(1.0):
        if not process.is_alive():  # it printed its traceback; do not wait for it forever
            raise RuntimeError(f"the sync process failed (exit code {process.exitcode})")
    result = parent.recv()
    process.join()
    return result
