"""Transactional outbox: messages are written with the change that causes them, then delivered.

``enqueue_*`` take the caller's transaction, so a crash between the change and the message
cannot lose the message (nor send one for a change that rolled back). Payloads are encrypted
at rest (they carry codes) and blanked once delivered. A background thread in each process
drains the outbox right after commits (``kick``); ``authsvc worker`` drains it too, for
retries and for processes that died.

Delivery rules (at least once; a duplicate needs a crash at the wrong instant):

* A row is leased one at a time, right before it is sent, with a fresh token and a lease of
  ``lease_seconds`` (60 s, far longer than one provider call, which times out after 10 s).
  Only the holder of the current token may reschedule the row; a sender never holds rows it
  is not sending, so a slow provider cannot make another sender's lease expire under it.
* A bundle (several messages in one row) records its progress after each message sent and
  renews the lease in the same statement; a sender that finds the row no longer its own stops.
* Emails carry a Message-ID fixed when the message was enqueued, so a message sent twice
  (a crash between the provider's acceptance and the database's record of it) reaches the
  recipient's mailbox as the same message. Webhook events carry a stable ``id`` for the same
  purpose. Twilio's Messages API has no idempotency key: an SMS can be sent twice only when
  the process dies within that window.
* ``stop()`` lets the message in flight finish and be recorded, then returns; nothing is left
  leased behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from ... import errors
from ...adapters.email import EmailSender
from ...adapters.sms import SmsSender
from ...errors import AuthsvcError
from ...security import contexts
from ...security.crypto import Cipher
from ...store import Store, Tx
from ...store.outbox import Leased
from .audit import audit

_log = logging.getLogger("authsvc.services.outbox")
MAX_ATTEMPTS = 12
LEASE_SECONDS = 60
STOP_SECONDS = 15.0  # stop() waits this long for the message in flight (provider timeouts: 10 s)


def delivery_cause(exc: BaseException) -> str:
    """What went wrong, for the log and ``outbox status``: the adapters' ``DeliveryError``
    details (provider status and message, which they build without bodies or credentials);
    for anything else only the exception type, since its text could echo a message body."""
    if isinstance(exc, AuthsvcError):
        return f"{type(exc).__name__}: {exc.detail}"[:500]
    return type(exc).__name__


class EventSender(Protocol):
    def send(self, event: dict) -> None:
        """POST one signed security event (``adapters.webhooks.WebhookSender``)."""
        ...


class Outbox:
    def __init__(
        self,
        store: Store,
        cipher: Cipher,
        *,
        sms: SmsSender,
        email: EmailSender,
        webhooks: EventSender | None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._lease_seconds = lease_seconds
        self._handlers: dict[str, Callable[[dict], object]] = {
            "sms": lambda p: sms.send(p["to"], p["body"]),
            "email": lambda p: email.send(p["to"], p["subject"], p["body"], message_id=p.get("key")),
        }
        if webhooks is not None:
            self._handlers["webhook"] = lambda p: webhooks.send(p)
        self._wake = threading.Event()
        self._enqueued = threading.local()  # did this thread enqueue since its last kick()?
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ enqueue
    def _enqueue(self, tx: Tx, kind: str, payload: dict) -> None:
        sealed = self._cipher.encrypt(json.dumps(payload).encode(), aad=contexts.outbox_aad(kind))
        tx.outbox.insert(kind, sealed)
        self._enqueued.any = True

    def sms(self, tx: Tx, to: str, body: str) -> None:
        self._enqueue(tx, "sms", {"to": to, "body": body})

    def email(self, tx: Tx, to: str, subject: str, body: str) -> None:
        self._enqueue(tx, "email", {"to": to, "subject": subject, "body": body, "key": _message_key()})

    def bundle(self, tx: Tx, messages: list[dict]) -> None:
        """Several messages in ONE row (possibly none): callers that must not reveal which
        messages they send (registered vs unknown email) write the same row either way.
        Each message is ``{"kind": "sms", "to", "body"}`` or ``{"kind": "email", "to", "subject", "body"}``."""
        keyed = [{**m, "key": _message_key()} if m.get("kind") == "email" else m for m in messages]
        self._enqueue(tx, "bundle", {"messages": keyed})

    def event(self, tx: Tx, event_type: str, data: dict) -> None:
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
        """Deliver up to ``limit`` rows that are due now, one lease at a time; returns how many
        were delivered. Stops early when nothing is due or ``stop()`` was called."""
        delivered = 0
        for _ in range(limit):
            if self._stop.is_set():
                break
            token = str(uuid.uuid4())
            with self._store.transaction() as tx:
                row = tx.outbox.lease(token, self._lease_seconds)
            if row is None:
                break
            delivered += self._deliver(row, token)
        return delivered

    def _deliver(self, row: Leased, token: str) -> bool:
        try:
            payload = json.loads(self._cipher.decrypt(row.payload, aad=contexts.outbox_aad(row.kind)))
            if row.kind == "bundle":
                if not self._deliver_bundle(row, token, payload["messages"]):
                    return False  # the lease passed to another sender: the row is theirs now
            else:
                self._handlers[row.kind](_keyed(payload, row.id, 0))
        except Exception as exc:  # noqa: BLE001 - one bad message must never stop delivery
            delay = min(3600, 2 ** row.attempts)
            cause = delivery_cause(exc)
            _log.warning("outbox %s #%s attempt %s failed: %s", row.kind, row.id, row.attempts, cause,
                         extra={"fields": {"outbox_id": row.id, "kind": row.kind,
                                           "attempts": row.attempts, "cause": cause}})
            with self._store.transaction() as tx:
                tx.outbox.retry_later(row.id, token, delay=delay, error=cause, max_attempts=MAX_ATTEMPTS)
            return False
        with self._store.transaction() as tx:
            tx.outbox.delivered(row.id)
        return True

    def _deliver_bundle(self, row: Leased, token: str, messages: list[dict]) -> bool:
        """Try every message (an SMS outage must not hold back the email). After each one sent,
        the row keeps only what is left (failed or not yet tried) and its lease is renewed, so
        neither a retry nor a crash sends a message twice; the first error is raised at the end.
        False when the row stopped being ours midway."""
        failed, first_error = [], None
        for i, message in enumerate(messages):
            message = _keyed(message, row.id, i)
            try:
                self._handlers[message["kind"]](message)
            except Exception as exc:  # noqa: BLE001 - kept for the retry, re-raised below
                failed.append(message)
                first_error = first_error or exc
                continue
            left = failed + [_keyed(m, row.id, j) for j, m in enumerate(messages) if j > i]
            if left and not self._save_progress(row.id, token, left):
                return False
        if first_error is not None:
            if len(failed) < len(messages) and not self._save_progress(row.id, token, failed):
                return False
            raise first_error
        return True

    def _save_progress(self, row_id: int, token: str, left: list[dict]) -> bool:
        sealed = self._cipher.encrypt(json.dumps({"messages": left}).encode(), aad=contexts.outbox_aad("bundle"))
        with self._store.transaction() as tx:
            return tx.outbox.progress(row_id, token, sealed, self._lease_seconds)

    def depth(self) -> dict[str, int]:
        with self._store.transaction() as tx:
            return dataclasses.asdict(tx.outbox.depth())

    def recent_errors(self, limit: int = 10) -> list[dict]:
        """Undelivered messages whose last attempt failed, newest first, with the cause."""
        with self._store.transaction() as tx:
            return [dataclasses.asdict(r) for r in tx.outbox.recent_errors(limit)]

    def requeue_failed(self, *, operator: str, reason: str) -> int:
        with self._store.transaction() as tx:
            n = tx.outbox.requeue_failed()
            audit(tx, f"operator:{operator}", "outbox.requeued", None, count=n, reason=reason)
        return n

    # ------------------------------------------------------------------ background
    def kick(self) -> None:
        """Wake the dispatcher after a commit, when this thread enqueued something (a login
        without messages must not cost the dispatcher a database round)."""
        if getattr(self._enqueued, "any", False):
            self._enqueued.any = False
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
        """Drain, then wait for a kick or ``idle_seconds``. A failing drain is logged with its
        cause once (and again only when the cause changes), then once more when it works again,
        not every round: an unmigrated or unreachable database says so a single time."""
        failing: str | None = None
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
                if failing is not None:
                    _log.warning("outbox drain works again")
                    failing = None
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure (database down...)
                cause = _drain_failure(exc)
                if cause != failing:
                    _log.warning("outbox drain failed: %s; retrying every %g s, quietly until the cause changes",
                                 cause, idle_seconds)
                    failing = cause
            self._wake.wait(idle_seconds)

    def request_stop(self) -> None:
        """Ask the sender to stop after the message in flight, without waiting (signal handlers)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Stop the background sender after the message in flight; True when it has stopped."""
        self.request_stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout)
            if thread.is_alive():
                _log.warning("outbox sender still busy after %.0f s; leaving it", timeout)
                return False
        return True


def _message_key() -> str:
    """A random key fixed at enqueue time: the email's Message-ID, the same on every retry."""
    return secrets.token_hex(16)


def _keyed(message: dict, row_id: int, index: int) -> dict:
    """Rows written before keys existed get one derived from their place in the outbox."""
    if message.get("kind", "email") == "email" and "subject" in message and not message.get("key"):
        return {**message, "key": f"outbox{row_id}x{index}"}
    return message


def _drain_failure(exc: Exception) -> str:
    """What an operator needs to know about a failed drain, in one line (no message content)."""
    if isinstance(exc, errors.SchemaNotCurrent):
        return f"the database is not migrated ({exc.what}): run `authsvc db upgrade`"
    if isinstance(exc, errors.StoreUnavailable):
        return "the database is unavailable"
    if isinstance(exc, errors.AuthsvcError):
        return f"{type(exc).__name__}: {exc.detail}"
    return type(exc).__name__
