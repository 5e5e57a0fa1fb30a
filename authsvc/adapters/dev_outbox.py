"""--dev only: keeps the last messages the console providers printed, for the example page.

A real deployment never builds this (it wraps only the console SMS and email senders, which
refuse to start outside ``--dev``): codes must reach people by SMS and email, not a web page.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .email import EmailSender
from .sms import SmsSender

KEEP = 50


class DevOutbox:
    def __init__(self) -> None:
        self._recent: deque[dict] = deque(maxlen=KEEP)
        self._lock = threading.Lock()

    def _add(self, message: dict) -> None:
        with self._lock:
            self._recent.appendleft({**message, "at": time.time()})

    def recent(self) -> list[dict]:
        """Newest first."""
        with self._lock:
            return list(self._recent)

    def sms(self, sender: SmsSender) -> SmsSender:
        outbox = self

        class _Recording:
            def send(self, to: str, body: str) -> str:
                sid = sender.send(to, body)
                outbox._add({"kind": "sms", "to": to, "body": body})
                return sid

        return _Recording()

    def email(self, sender: EmailSender) -> EmailSender:
        outbox = self

        class _Recording:
            def send(self, to: str, subject: str, body: str, *, message_id: str | None = None) -> str:
                sid = sender.send(to, subject, body, message_id=message_id)
                outbox._add({"kind": "email", "to": to, "subject": subject, "body": body})
                return sid

        return _Recording()
