"""An SMTP server on 127.0.0.1 (aiosmtpd) that records every message it accepts.

    with SmtpSink() as sink:
        SmtpEmail(sink.url, "authsvc <no-reply@example.test>").send(...)
        sink.wait_for(lambda m: m["to"] == "ann@example.test")
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.delay = 0.0  # slow mode: seconds before each accepted message is acknowledged

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> SmtpSink:
        for attempt in range(5):  # the free port may be taken between probe and bind
            controller = Controller(_Handler(self), hostname="127.0.0.1", port=free_port())
            try:
                controller.start()
            except Exception:
                if attempt == 4:
                    raise
                continue
            self._controller = controller
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._controller, "SmtpSink is not running"
        return self._controller.port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _record(self, envelope) -> None:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "to": str(msg["To"]),
            "from_": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "body": part.get_content() if part is not None else "",
            "message_id": str(msg["Message-ID"]),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message": msg,
        }
        with self._lock:
            self.messages.append(record)

    # --- assertions --------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
        self.delay = 0.0

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[dict], bool] | None = None, timeout: float = 5) -> dict:
        """The first recorded message matching ``predicate``, polling until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.snapshot():
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                got = [(m["to"], m["subject"]) for m in self.snapshot()]
                raise AssertionError(f"no matching email within {timeout}s; got {got!r}")
            time.sleep(0.02)


class _Handler:
    """aiosmtpd handler (kept apart: aiosmtpd inspects every attribute of its handler)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        self._sink._record(envelope)
        if self._sink.delay:  # accepted (recorded) at once, acknowledged late: a slow provider
            await asyncio.sleep(self._sink.delay)
        return "250 Message accepted for delivery"

