"""Liveness and readiness.

Liveness (``/healthz``) never touches the database: a process that serves is alive, whatever
the database does. Readiness says 503 from the moment the process is told to stop (it serves
on for a while, so load balancers take it out of rotation first). Otherwise it is quick and
honest: while the store's circuit is open (the database was found unreachable) it says so
without waiting; otherwise one pooled query checks that the database answers and its
migrations are current.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ... import errors
from ...store import Store


class Health:
    def __init__(self, store: Store, migrations_dir: Path) -> None:
        self._store = store
        self._dir = migrations_dir
        # set by `serve`: true once the process is shutting down (authsvc/drain.py)
        self.draining: Callable[[], bool] = lambda: False

    def readiness(self) -> tuple[bool, str]:
        if self.draining():
            return False, "shutting down"
        if not self._store.available:
            return False, "database unavailable"
        try:
            status = self._store.schema_status(self._dir)
        except errors.AuthsvcError as exc:
            return False, exc.detail
        if status.pending:
            return False, f"migrations pending: {', '.join(status.pending)}"
        if status.modified:
            return False, f"applied migrations were modified: {', '.join(status.modified)}"
        return True, "ok"
