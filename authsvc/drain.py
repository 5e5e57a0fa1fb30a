"""Leaving a load balancer's rotation before closing the listener (rolling restarts).

On SIGTERM the gunicorn master first *drains* for ``AUTHSVC_DRAIN_SECONDS``: ``/readyz``
answers 503 at once in every worker, while every worker keeps accepting and serving as
before, so a load balancer that checks readiness (HAProxy ``option httpchk``, a Kubernetes
Service, an ingress) takes the replica out of rotation before anything is refused. Then the
usual graceful stop: workers stop accepting, take in what was queued, answer it and exit
within ``AUTHSVC_GRACEFUL_TIMEOUT``. A second SIGTERM (or SIGINT, SIGQUIT) skips the rest of
the drain.

The flag lives in shared memory made by the master before it forks the workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from gunicorn.arbiter import Arbiter


class DrainFlag:
    """Set by the master, read by every worker (an anonymous shared mapping)."""

    def __init__(self) -> None:
        self._value = multiprocessing.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def draining_arbiter(flag: DrainFlag, seconds: float) -> type[Arbiter]:
    class DrainingArbiter(Arbiter):
        _drain_until: float | None = None

        def handle_term(self) -> None:
            if self._drain_until is not None or seconds <= 0:
                raise StopIteration  # a second SIGTERM: stop now
            flag.set()
            self._drain_until = time.monotonic() + seconds
            logging.getLogger("authsvc").info(
                "SIGTERM: readiness 503, still serving for %.0f s, then stopping", seconds)

        def murder_workers(self) -> None:  # called on every turn of the master's loop (<= 1 s)
            super().murder_workers()
            if self._drain_until is not None and time.monotonic() >= self._drain_until:
                raise StopIteration  # the graceful stop (gunicorn's halt)

    return DrainingArbiter


def run(application: Any, flag: DrainFlag, seconds: float) -> None:
    """``BaseApplication.run`` with the draining arbiter."""
    import sys

    try:
        draining_arbiter(flag, seconds)(application).run()
    except RuntimeError as exc:
        print(f"\nError: {exc}\n", file=sys.stderr)
        sys.exit(1)
