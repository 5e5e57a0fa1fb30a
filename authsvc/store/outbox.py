"""The ``outbox`` table (queries/outbox.sql): rows leased one at a time to a sender, each lease
with a token of its own; only the holder of the current token reschedules or renews the row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .base import Queries, Table


@dataclass(frozen=True, slots=True)
class Leased:
    """A row leased to one sender, right before it is sent (payload sealed)."""

    id: int
    kind: str
    payload: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Depth:
    pending: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """An undelivered message whose last attempt failed (operators' ``outbox status``)."""

    id: int
    kind: str
    attempts: int
    available_at: datetime
    failed_at: datetime | None
    last_error: str | None


class Outbox(Table):
    queries = Queries("outbox.sql")

    def insert(self, kind: str, payload: str) -> int:
        row_id: int = self._value("outbox_insert", kind=kind, payload=payload)
        return row_id

    def lease(self, token: str, lease_seconds: float) -> Leased | None:
        return self._one(Leased, "outbox_lease", token=token, lease_seconds=lease_seconds)

    def delivered(self, row_id: int) -> None:
        self._run("outbox_delivered", id=row_id)

    def retry_later(self, row_id: int, token: str, *, delay: float, error: str, max_attempts: int) -> None:
        self._run("outbox_retry_later", id=row_id, token=token, delay=delay, error=error, max_attempts=max_attempts)

    def progress(self, row_id: int, token: str, payload: str, lease_seconds: float) -> bool:
        """Keep only what is left of a bundle and renew its lease; False when the row is no
        longer this sender's."""
        return self._value("outbox_progress", id=row_id, token=token, payload=payload,
                           lease_seconds=lease_seconds) is not None

    def depth(self) -> Depth:
        depth = self._one(Depth, "outbox_depth")
        assert depth is not None  # an aggregate: always one row
        return depth

    def requeue_failed(self) -> int:
        return len(self._values("outbox_requeue_failed"))

    def recent_errors(self, limit: int) -> list[FailedMessage]:
        return self._all(FailedMessage, "outbox_recent_errors", limit=limit)
