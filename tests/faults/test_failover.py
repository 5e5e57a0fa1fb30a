"""Database failover (README, "A fleet of replicas"):
a primary with a synchronous standby (``pg_basebackup -R``) on loopback ports, the service
(gunicorn, 2 workers) on a libpq multi-host URL, writes under way; the primary dies
(``pg_ctl stop -m immediate``) and the standby is promoted (``pg_ctl promote``). Writes are
back within 5 s of the promotion, no acknowledged write is lost, and nothing answers 500 in
the gap, with and without ``target_session_attrs=read-write`` (without it libpq happily
connects to the standby: the store must see that it cannot write)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from authsvc.store import migrate
from tests.faults.pgcluster import PgCluster
from tests.faults.service import ROOT, Service, service_env
from tests.support.flows import STRONG_PASSWORD, new_email, new_phone

WRITES_BACK = 5.0  # seconds from the promotion to the first acknowledged write
WRITERS = 3


def _ip() -> str:
    n = secrets.randbits(24)
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


@dataclass
class Writes:
    """Registrations started in a loop: each 202 is an acknowledged write (its id)."""

    service: Service
    acked: list[tuple[float, str]] = field(default_factory=list)
    refused: list[tuple[float, int | str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        client = self.service.client(timeout=15)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                r = client.post("/v1/registrations", headers={"X-Forwarded-For": _ip()},
                                json={"email": new_email(), "phone": new_phone(), "password": STRONG_PASSWORD})
                status: int | str = r.status_code
            except OSError as exc:
                status = type(exc).__name__
            if status == 202:
                self.acked.append((sent, r.get_json()["registration_id"]))
            else:
                self.refused.append((sent, status))
                self.stop.wait(0.05)


@pytest.fixture
def pair():
    primary = PgCluster().init()
    standby = None
    try:
        primary.start()
        migrate.upgrade(primary.url, ROOT / "migrations")
        standby = primary.standby()
        standby.start()
        standby.wait_ready()
        yield primary, standby
    finally:
        for cluster in (primary, standby):
            if cluster is not None:
                cluster.destroy()


@pytest.mark.parametrize("attrs", ["?target_session_attrs=read-write", ""], ids=["read-write", "plain"])
def test_failover_to_a_synchronous_standby(pair, attrs, twilio_server, smtp_server):
    primary, standby = pair
    url = f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres{attrs}"
    service = Service(service_env(url, twilio_server, smtp_server, AUTHSVC_TRUSTED_PROXIES="127.0.0.1/32",
                                  AUTHSVC_METRICS_BIND="off"))
    writes = Writes(service)
    threads = [threading.Thread(target=writes.loop, daemon=True) for _ in range(WRITERS)]
    try:
        service.start()
        for t in threads:
            t.start()
        time.sleep(1.5)
        before = len(writes.acked)
        assert before > 0, writes.refused[:5]
        primary.kill()
        time.sleep(1.0)  # the gap: nothing can write (503), the standby must not be taken for a primary
        promoted = time.monotonic()
        standby.promote()
        deadline = promoted + WRITES_BACK + 5
        while time.monotonic() < deadline and not any(sent > promoted for sent, _ in writes.acked):
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        writes.stop.set()
        for t in threads:
            t.join(20)
        log = service.log()
        service.close()

    back = min((sent for sent, _ in writes.acked if sent > promoted), default=None)
    assert back is not None, f"no write within {WRITES_BACK + 5} s of the promotion:\n{log[-3000:]}"
    assert back - promoted <= WRITES_BACK, f"writes back {back - promoted:.1f} s after the promotion"
    statuses = {status for _, status in writes.refused}
    assert statuses <= {503}, f"answers other than 202/503: {statuses}\n{log[-3000:]}"
    ids = [rid for _, rid in writes.acked]
    with psycopg.connect(standby.url, autocommit=True) as conn:
        found = {str(r[0]) for r in conn.execute("SELECT id FROM registrations WHERE id = ANY(%s::uuid[])", (ids,))}
    lost = [rid for rid in ids if rid not in found]
    assert not lost, f"{len(lost)} of {len(ids)} acknowledged writes lost"
    print(f"failover{attrs or ' (no target_session_attrs)'}: {len(ids)} acknowledged writes, "
          f"{before} before the kill, 0 lost, writes back {back - promoted:.2f} s after the promotion, "
          f"{len(writes.refused)} 503 in the gap")
