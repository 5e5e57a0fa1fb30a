"""A rolling restart of the fleet under steady sign-ins loses no request (README,
"Rolling restarts"): each replica in turn gets SIGTERM, says 503 on /readyz while it still
serves (AUTHSVC_DRAIN_SECONDS), is taken out of rotation by the load balancer's readiness
checks, finishes what it accepted, exits, starts again and rejoins when ready.

The load balancer is the test's own, doing what HAProxy's ``option httpchk GET /readyz``
(``inter 250ms fall 1 rise 1``) or a Kubernetes Service does: requests go round-robin to the
replicas whose last readiness check answered 200."""

from __future__ import annotations

import itertools
import threading
import time

from tests.fleet.conftest import random_ip
from tests.fleet.flows import new_account, sign_in

CHECK_INTERVAL = 0.25
SIGNERS = 3
PAUSE = 0.05  # steady sign-ins, not a saturating load (the restarts need CPU too)


class Balancer:
    def __init__(self, fleet) -> None:
        self.replicas = fleet.replicas
        self.ready = [True] * len(self.replicas)
        self._rr = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._check, daemon=True)

    def _check(self) -> None:
        while not self._stop.is_set():
            for i, r in enumerate(self.replicas):
                try:
                    self.ready[i] = r.request("GET", "/readyz", timeout=1)[0] == 200
                except OSError:
                    self.ready[i] = False
            self._stop.wait(CHECK_INTERVAL)

    def pick(self):
        for _ in range(len(self.replicas)):
            i = next(self._rr) % len(self.replicas)
            if self.ready[i]:
                return self.replicas[i]
        raise AssertionError("no replica in rotation")

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def test_rolling_restart_under_steady_sign_ins_loses_no_request(fleet, twilio, smtp):
    accounts = [new_account(fleet.replicas[i % 3].client(headers={"X-Forwarded-For": random_ip()}), twilio, smtp)
                for i in range(SIGNERS)]
    done: list[float] = []
    events: list[str] = []
    t0 = time.monotonic()
    failed: list[str] = []
    stop = threading.Event()

    def sign_ins(account) -> None:
        while not stop.is_set():
            try:
                # each sign-in from an address of its own, as many customers' are: on a quiet
                # machine one address would meet the per-address limit (120 a minute) instead
                sign_in(balancer.pick().client(headers={"X-Forwarded-For": random_ip()}), account)
                done.append(time.monotonic())
                stop.wait(PAUSE)
            except (AssertionError, OSError) as exc:
                failed.append(f"{time.monotonic() - t0:.1f}s {exc!r}"[:300])

    with Balancer(fleet) as balancer:
        threads = [threading.Thread(target=sign_ins, args=(a,), daemon=True) for a in accounts]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            for n, replica in enumerate(fleet.replicas):
                events.append(f"{time.monotonic() - t0:.1f}s stop {n}")
                assert replica.stop(timeout=60) == 0, replica.log()[-3000:]
                events.append(f"{time.monotonic() - t0:.1f}s start {n}")
                replica.start(timeout=120)
                events.append(f"{time.monotonic() - t0:.1f}s ready {n}")
                deadline = time.monotonic() + 10  # back in rotation before the next one goes
                while not all(balancer.ready) and time.monotonic() < deadline:
                    time.sleep(0.05)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    print(f"rolling restart of {len(fleet.replicas)} replicas: {len(done)} sign-ins, {len(failed)} failed", events)
    assert not failed, (failed[:5], events)
    assert len(done) >= 20
