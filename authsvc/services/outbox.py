"""Transactional outbox: messages are written with the change that causes them, then delivered.

``enqueue_*`` take the caller's transaction, so a crash between the change and the message
cannot lose the message (nor send one for a change that rolled back). Delivery is at least
once: a row is leased, handed to its adapter, and marked delivered; on failure it is retried
with exponential backoff. Payloads are encrypted at rest (they carry codes) and blanked once
delivered. A background thread in each process drains the outbox right after commits
(``kick``); ``authsvc worker`` drains it too, for retries and for processes that died.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import AuthsvcError
from ..security.crypto import Cipher
from .audit import audit

_log = logging.getLogger(__name__)
_AAD = b"authsvc outbox v1"
MAX_ATTEMPTS = 12
LEASE_SECONDS = 60


def delivery_cause(exc: BaseException) -> str:
    """What went wrong, for the log and ``outbox status``: the adapters' ``DeliveryError``
    details (provider status and message, which they build without bodies or credentials);
    for anything else only the exception type, since its text could echo a message body."""
    if isinstance(exc, AuthsvcError):
        return f"{type(exc).__name__}: {exc.detail}"[:500]
    return type(exc).__name__


class Outbox:
    def __init__(
        self,
        store: Any,
        cipher: Cipher,
        *,
        sms: Any,
        email: Any,
        webhooks: Any | None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._handlers: dict[str, Callable[[dict], None]] = {
            "sms": lambda p: sms.send(p["to"], p["body"]),
            "email": lambda p: email.send(p["to"], p["subject"], p["body"]),
        }
        if webhooks is not None:
            self._handlers["webhook"] = lambda p: webhooks.send(p)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ enqueue
    def _enqueue(self, tx: Any, kind: str, payload: dict) -> None:
        sealed = self._cipher.encrypt(json.dumps(payload).encode(), aad=_AAD + kind.encode())
        tx.run("outbox_insert", kind=kind, payload=sealed)

    def sms(self, tx: Any, to: str, body: str) -> None:
        self._enqueue(tx, "sms", {"to": to, "body": body})

    def email(self, tx: Any, to: str, subject: str, body: str) -> None:
        self._enqueue(tx, "email", {"to": to, "subject": subject, "body": body})

    def bundle(self, tx: Any, messages: list[dict]) -> None:
        """Several messages in ONE row (possibly none): callers that must not reveal which
        messages they send (registered vs unknown email) write the same row either way.
        Each message is ``{"kind": "sms", "to", "body"}`` or ``{"kind": "email", "to", "subject", "body"}``."""
        self._enqueue(tx, "bundle", {"messages": messages})

    def event(self, tx: Any, event_type: str, data: dict) -> None:
        """A security event for the webhook (dropped here when no webhook is configured)."""
        if "webhook" not in self._handlers:
            return
        self._enqueue(
            tx,
            "webhook",
            {"id": str(uuid.uuid4()), "type": event_type, "created": int(time.time()), "data": data},
        )

    # ------------------------------------------------------------------ deliver
    def deliver_due(self, limit: int = 20) -> int:
        """Deliver what is due now; returns how many were delivered."""
        with self._store.transaction() as tx:
            rows = tx.all("outbox_lease", limit=limit, lease_seconds=LEASE_SECONDS)
        delivered = 0
        for row in rows:
            try:
                payload = json.loads(
                    self._cipher.decrypt(row["payload"], aad=_AAD + row["kind"].encode())
                )
                if row["kind"] == "bundle":
                    self._deliver_bundle(row, payload["messages"])
                else:
                    self._handlers[row["kind"]](payload)
            except Exception as exc:  # noqa: BLE001 - one bad message must never stop delivery
                delay = min(3600, 2 ** row["attempts"])
                cause = delivery_cause(exc)
                _log.warning("outbox %s #%s attempt %s failed: %s", row["kind"], row["id"], row["attempts"], cause,
                             extra={"fields": {"outbox_id": row["id"], "kind": row["kind"],
                                               "attempts": row["attempts"], "cause": cause}})
                with self._store.transaction() as tx:
                    tx.run(
                        "outbox_retry_later",
                        id=row["id"],
                        delay=delay,
                        error=cause,
                        max_attempts=MAX_ATTEMPTS,
                    )
                continue
            with self._store.transaction() as tx:
                tx.run("outbox_delivered", id=row["id"])
            delivered += 1
        return delivered

    def _deliver_bundle(self, row: dict, messages: list[dict]) -> None:
        """Try every message (an SMS outage must not hold back the email); the row then keeps
        only the ones that failed, so a retry sends nothing twice, and the first error is raised."""
        failed, first_error = [], None
        for message in messages:
            try:
                self._handlers[message["kind"]](message)
            except Exception as exc:  # noqa: BLE001 - kept for the retry, re-raised below
                failed.append(message)
                first_error = first_error or exc
        if first_error is not None:
            if len(failed) < len(messages):
                sealed = self._cipher.encrypt(json.dumps({"messages": failed}).encode(), aad=_AAD + b"bundle")
                with self._store.transaction() as tx:
                    tx.run("outbox_partly_delivered", id=row["id"], payload=sealed)
            raise first_error

    def depth(self) -> dict[str, int]:
        with self._store.transaction() as tx:
            return dict(tx.one("outbox_depth"))

    def recent_errors(self, limit: int = 10) -> list[dict]:
        """Undelivered messages whose last attempt failed, newest first, with the cause."""
        with self._store.transaction() as tx:
            return [dict(r) for r in tx.all("outbox_recent_errors", limit=limit)]

    def requeue_failed(self, *, operator: str, reason: str) -> int:
        with self._store.transaction() as tx:
            n = len(tx.all("outbox_requeue_failed"))
            audit(tx, f"operator:{operator}", "outbox.requeued", None, count=n, reason=reason)
        return n

    # ------------------------------------------------------------------ background
    def kick(self) -> None:
        self._wake.set()

    def start(self, idle_seconds: float = 5.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_forever, args=(idle_seconds,), name="authsvc-outbox", daemon=True
        )
        self._thread.start()

    def run_forever(self, idle_seconds: float = 5.0) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure (database down...)
                _log.warning("outbox drain failed: %s", type(exc).__name__)
            self._wake.wait(idle_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
