"""gunicorn workers that finish what was accepted: on SIGTERM, the connections already queued
on the listening socket (the kernel's backlog: accepted by TCP, not yet by gunicorn) are taken
in and answered before the worker stops accepting, instead of being reset when it exits.

gunicorn's own workers stop accepting at once on SIGTERM; whatever arrived a moment before is
lost with the listening socket. Kubernetes' preStop sleep keeps new traffic away during the
shutdown (README, "Faults"); these workers take care of what was already on its way.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn import glogging
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

DRAIN_SECONDS = 5.0  # at most this long taking in queued connections after SIGTERM


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread: queued connections join the requests in flight, which the worker finishes
    within ``graceful_timeout`` as usual."""

    def set_accept_enabled(self, enabled: bool) -> None:
        if not enabled and not self.alive:
            self._take_backlog()
        super().set_accept_enabled(enabled)

    def _take_backlog(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        for listener in self.sockets:
            listener.setblocking(False)
            while time.monotonic() < deadline:
                before = self.nr_conns
                self.accept(listener)  # submits the connection to the thread pool
                if self.nr_conns == before:  # nothing was waiting (EAGAIN)
                    break


class DrainingSyncWorker(SyncWorker):  # type: ignore[misc]
    """sync: answers the queued connections one by one after the loop ends."""

    def run(self) -> None:
        super().run()
        deadline = time.monotonic() + DRAIN_SECONDS
        for listener in self.sockets:
            listener.setblocking(False)
            while time.monotonic() < deadline:
                try:
                    self.accept(listener)
                except OSError:  # EAGAIN: nothing left waiting (or the socket is gone)
                    break
                self.notify()


WORKER_CLASSES: dict[str, Any] = {
    "gthread": "authsvc.workers.DrainingThreadWorker",
    "sync": "authsvc.workers.DrainingSyncWorker",
}


class AppAccessLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log: the app writes its own JSON access line
    (``authsvc.access``). gunicorn otherwise builds its access-log atoms for every request
    even though its access logger is held at WARNING and drops the line (measured: ~5% of a
    worker's request CPU)."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
