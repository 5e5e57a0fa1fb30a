"""Waiting at the hash gate takes no thread from anyone else (issue 16, ``authsvc/workers.py``):
sign-ins and registrations are served by a thread pool of their own, so a crowd of strangers
waiting to be hashed never keeps other requests (a second-factor step, an introspection, the
signing keys) from a thread; and the gate sees every one of them (none waits unseen in a
thread pool's queue), so it orders them all."""

from __future__ import annotations

import json
import threading

from authsvc.workers import may_wait_at_gate
from tests.faults.service import Service, service_env


def test_which_requests_wait_at_the_gate():
    assert may_wait_at_gate(b"POST /v1/login HTTP/1.1\r\nHost: a\r\n\r\n{}")
    assert may_wait_at_gate(b"POST /v1/registrations HTTP/1.1\r\nHost: a\r\n\r\n{}")
    assert may_wait_at_gate(b"POST /v1/login?x=1 HTTP/1.1\r\n\r\n")
    # a sign-in with a device token is served by the other pool (a known device never queues
    # behind strangers for a thread); only the head counts, not a body that mentions the header
    assert not may_wait_at_gate(b"POST /v1/login HTTP/1.1\r\nX-Device-Token: abc\r\n\r\n{}")
    assert may_wait_at_gate(b'POST /v1/login HTTP/1.1\r\nHost: a\r\n\r\n{"x": "\r\nx-device-token: 1"}')
    for line in (b"POST /v1/login/mfa HTTP/1.1", b"POST /v1/introspect HTTP/1.1", b"GET /v1/login HTTP/1.1",
                 b"POST /v1/loginx HTTP/1.1", b"POST /v1/registrations/verify HTTP/1.1"):
        assert not may_wait_at_gate(line + b"\r\n\r\n"), line


def test_strangers_waiting_at_the_gate_keep_no_other_request_from_a_thread(db_url, twilio, smtp):
    # one worker with 2 ordinary threads and one hashing slot; slow hashes (argon2 t=8) and a
    # budget nobody reaches, so 24 strangers' sign-ins all wait at the gate, one hash at a time
    svc = Service(service_env(db_url, twilio, smtp, AUTHSVC_THREADS="2", AUTHSVC_HASH_CONCURRENCY="1",
                              AUTHSVC_ARGON2_TIME_COST="8", AUTHSVC_HASH_QUEUE_BUDGET_MS="120000",
                              AUTHSVC_TRUSTED_PROXIES="127.0.0.1/32"), workers=1).start()
    try:
        n = 24
        answered: list[int] = []
        lock = threading.Lock()

        def stranger(i: int) -> None:
            status, _, _ = svc.request("POST", "/v1/login", json.dumps(
                {"email": f"nobody{i}@example.com", "password": "wrong horse battery 42"}).encode(),
                {"Content-Type": "application/json", "X-Forwarded-For": f"2001:db8:9:{i:x}::1"}, timeout=120)
            with lock:
                answered.append(status)

        threads = [threading.Thread(target=stranger, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        # wait until the crowd is in: the first answers come one hash at a time
        while True:
            with lock:
                if answered:
                    break
            threads[0].join(0.05)
        for _ in range(5):  # other requests meanwhile: each answered while the crowd still waits
            status, body, _ = svc.request("GET", "/.well-known/jwks.json", timeout=120)
            assert status == 200 and json.loads(body)["keys"]
            with lock:
                still_waiting = n - len(answered)
            assert still_waiting >= n // 2, f"only {still_waiting} strangers were still waiting"
        for t in threads:
            t.join(180)
        assert answered == [401] * n  # every stranger was served (none shed, none lost)
    finally:
        svc.close()
