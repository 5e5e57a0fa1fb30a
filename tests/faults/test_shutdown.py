"""Shutdown and worker crashes, with the service run as production runs it (gunicorn).

SIGTERM: the service stops accepting, answers every request it had accepted, and each
worker's outbox sender finishes the message in flight and stops, well within the grace
period; nothing is lost and nothing sent twice (the rest is delivered by the next sender).
kill -9 of one worker costs at most the request it was serving; the other worker serves on
and gunicorn replaces the dead one.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time
from collections import Counter

import psutil

from authsvc.app import build_container
from tests.faults.service import Service, service_env
from tests.support.flows import STRONG_PASSWORD, new_email, new_phone

GRACE = 30  # AUTHSVC_GRACEFUL_TIMEOUT the service runs with (the default)


def _registration(email: str, phone: str) -> bytes:
    body = json.dumps({"email": email, "phone": phone, "password": STRONG_PASSWORD}).encode()
    return (b"POST /v1/registrations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _send(port: int, raw: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(raw)
    return s


def _read_status(s: socket.socket) -> int | str:
    """The status of the answer on ``s``, or the error that took its place."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.1 "):
        return f"no answer ({data[:40]!r})"
    return int(data.split(b" ", 2)[1])


def test_sigterm_answers_what_was_accepted_and_stops_the_senders_cleanly(settings, twilio, smtp):
    twilio.delay = smtp.delay = 1.0  # a message is at the provider when SIGTERM comes
    key = "t1:" + base64.b64encode(settings.encryption_keys[0][1]).decode()  # the same as build_container's
    svc = Service(service_env(settings.database_url, twilio, smtp, AUTHSVC_ENCRYPTION_KEY=key)).start()
    try:
        people = [(new_email(), new_phone()) for _ in range(4)]
        statuses = [_read_status(_send(svc.port, _registration(e, p))) for e, p in people]
        assert statuses == [202] * 4, statuses
        twilio.wait_for(timeout=10)  # the senders are busy with the slow provider

        # Requests in flight at SIGTERM (registrations are throttled per IP; these are not).
        raw = b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        in_flight = [_send(svc.port, raw) for _ in range(12)]
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        answers = [_read_status(s) for s in in_flight]
        code = svc.proc.wait(GRACE + 10)
        stopped_in = time.monotonic() - t0
        log = svc.log()
    finally:
        svc.close()

    print(f"\nSIGTERM: {len(answers)} requests in flight answered {Counter(answers)}; "
          f"exit {code} after {stopped_in:.1f}s")
    assert all(a == 200 for a in answers), answers
    assert code == 0, log
    # Within the grace period: workers leave once their sender has finished the message in
    # flight (a bundle: 2 x 1 s), not after the rest of the outbox, and are never killed.
    assert stopped_in < GRACE, f"took {stopped_in:.1f}s\n{log[-6000:]}"
    assert "outbox sender still busy" not in log

    # Nothing was left leased: the next sender delivers the rest at once, nothing twice.
    container = build_container(settings)
    try:
        while container.outbox.deliver_due():
            pass
        assert container.outbox.depth() == {"pending": 0, "failed": 0}
    finally:
        container.close()
    time.sleep(1.5)  # any message still in flight anywhere would land now
    assert Counter(m["to"] for m in twilio.snapshot()) == Counter(p for _, p in people)
    assert Counter(m["to"] for m in smtp.snapshot()) == Counter(e for e, _ in people)


def test_kill_9_of_a_worker_costs_only_its_own_request(settings, twilio, smtp):
    svc = Service(service_env(settings.database_url, twilio, smtp)).start()
    try:
        arbiter = psutil.Process(svc.proc.pid)
        workers = arbiter.children()
        assert len(workers) == 2
        os.kill(workers[0].pid, signal.SIGKILL)
        statuses = [svc.request("GET", "/readyz")[0] for _ in range(20)]
        assert statuses == [200] * 20, statuses
        deadline = time.monotonic() + 30
        while True:
            now = {p.pid for p in arbiter.children()}
            if len(now) == 2 and workers[0].pid not in now:
                break
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.2)
        time.sleep(1)
        assert [svc.request("GET", "/readyz")[0] for _ in range(10)] == [200] * 10
        assert svc.proc.poll() is None
    finally:
        svc.close()
