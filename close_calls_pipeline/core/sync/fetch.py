"""Fetching on a bounded pool of threads, pages handed to the caller in arrival order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Task = TypeVar("Task")
Page = TypeVar("Page")


def fetch_concurrently(
    tasks: list[Task], fetch: Callable[[Task], Iterable[Page]], workers: int
) -> Iterator[tuple[Task, Page | None]]:
    """Run `fetch(task)` for every task on a bounded pool; yield (task, page) as pages arrive
    and (task, None) once a task is complete. A task's pages come in the order it fetched them.
    Memory stays bounded by a small page queue; the first error stops everything and is raised."""
    pages: queue.Queue = queue.Queue(maxsize=max(2, workers * 2))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(task: Task) -> None:
        if stop.is_set():
            return
        try:
            for page in fetch(task):
                if not put((task, page, None)):
                    return
            put((task, None, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put((task, None, error))

    remaining = len(tasks)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="close-fetch")
    try:
        for task in tasks:
            pool.submit(work, task)
        while remaining:
            task, page, error = pages.get()
            if error is not None:
                raise error
            if page is None:
                remaining -= 1
            yield task, page
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
