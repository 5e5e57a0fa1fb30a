"""Readiness: the database answers and its migrations are current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import errors
from ..store import migrate


class Health:
    def __init__(self, store: Any, migrations_dir: Path) -> None:
        self._store = store
        self._dir = migrations_dir

    def readiness(self) -> tuple[bool, str]:
        try:
            self._store.ping()
            status = migrate.status(self._store.url, self._dir)
        except errors.AuthsvcError as exc:
            return False, exc.detail
        if status.pending:
            return False, f"migrations pending: {', '.join(status.pending)}"
        if status.modified:
            return False, f"applied migrations were modified: {', '.join(status.modified)}"
        return True, "ok"
