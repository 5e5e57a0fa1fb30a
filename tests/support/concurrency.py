"""Run calls at the same instant from several threads (for exactly-once tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def race(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Start every call in its own thread, released together by a barrier; return the results."""
    barrier = threading.Barrier(len(calls))
    results: list[T] = []
    lock = threading.Lock()

    def run(call: Callable[[], T]) -> None:
        barrier.wait()
        value = call()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
