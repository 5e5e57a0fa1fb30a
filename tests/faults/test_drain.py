"""SIGTERM drains first (authsvc/drain.py): /readyz answers 503 at once while the service keeps
accepting and serving for AUTHSVC_DRAIN_SECONDS, then it stops as before."""

from __future__ import annotations

import time

from tests.faults.service import Service, service_env

DRAIN = 2


def test_readiness_turns_503_before_the_listener_closes(db_url, twilio, smtp):
    service = Service(service_env(db_url, twilio, smtp, AUTHSVC_DRAIN_SECONDS=str(DRAIN),
                                  AUTHSVC_METRICS_BIND="off")).start()
    try:
        assert service.request("GET", "/readyz")[0] == 200
        service.signal()
        signalled = time.monotonic()
        # the master handles the signal on its next turn (<= 1 s): readiness turns 503 then
        while service.request("GET", "/readyz", timeout=5)[0] == 200:
            assert time.monotonic() - signalled < 1.5, "readiness still 200 after the signal"
            time.sleep(0.02)
        seen: list[tuple[float, int, int, int]] = []
        while time.monotonic() - signalled < DRAIN - 0.5:
            ready = service.request("GET", "/readyz", timeout=5)[0]
            alive = service.request("GET", "/healthz", timeout=5)[0]
            jwks = service.request("GET", "/.well-known/jwks.json", timeout=5)[0]  # real work, served
            seen.append((time.monotonic() - signalled, ready, alive, jwks))
            time.sleep(0.1)
        assert seen and all(r == 503 and a == 200 and j == 200 for _, r, a, j in seen), seen
        assert service.proc.wait(30) == 0
        assert time.monotonic() - signalled >= DRAIN
        assert "still serving" in service.log()
    finally:
        service.close()
