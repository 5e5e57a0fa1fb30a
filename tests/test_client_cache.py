"""Client credentials cached per worker (services/core/clients.py), revocation-aware: a revoked
client stops working in every worker as soon as the revocation commits, and a worker that
cannot hear revocations does not use its cache."""

from __future__ import annotations

import secrets
import time

import psycopg
import pytest

from authsvc import errors
from authsvc.security.crypto import Cipher
from authsvc.services.core.clients import ClientService
from authsvc.services.platform.audit import AuditChain
from authsvc.store import Store

WAIT = 5.0


@pytest.fixture
def stores(db_url):
    made = [Store(db_url), Store(db_url)]  # two workers (or a worker and the operator's CLI)
    cipher = Cipher((("t1", secrets.token_bytes(32)),))
    for s in made:
        AuditChain(cipher).install(s).ensure(s)  # creating and revoking clients is audited
    yield made
    for s in made:
        s.close()


class Counting:
    """The store, counting the statements the service runs on it."""

    def __init__(self, store: Store) -> None:
        self.store, self.calls = store, 0

    def one(self, query, /, **params):
        self.calls += 1
        return self.store.one(query, **params)

    def __getattr__(self, name):
        return getattr(self.store, name)


def _listening(service: ClientService) -> None:
    end = time.monotonic() + WAIT
    while not service._listening:
        assert time.monotonic() < end, "the listener did not start"
        time.sleep(0.01)


def _rejected_within(service: ClientService, client_id: str, secret: str, seconds: float = WAIT) -> float:
    started = time.monotonic()
    while True:
        try:
            service.authenticate(client_id, secret)
        except errors.InvalidClient:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "a revoked client kept working"
        time.sleep(0.005)


def test_a_cached_client_costs_no_database_round_trip(stores):
    counting = Counting(stores[0])
    worker = ClientService(counting)  # type: ignore[arg-type]
    client_id, secret = worker.create("backend", operator="test", reason="a test client")
    worker.authenticate(client_id, secret)  # starts the listener
    _listening(worker)
    worker.authenticate(client_id, secret)
    before = counting.calls
    for _ in range(5):
        assert worker.authenticate(client_id, secret) == client_id
    assert counting.calls == before
    with pytest.raises(errors.InvalidClient):  # a wrong secret is still refused from the cache
        worker.authenticate(client_id, secret + "x")


def test_a_client_revoked_elsewhere_stops_working_in_a_worker_that_cached_it(stores):
    worker, operator = ClientService(stores[0]), ClientService(stores[1], cache=False)
    client_id, secret = operator.create("backend", operator="test", reason="a test client")
    worker.authenticate(client_id, secret)
    _listening(worker)
    worker.authenticate(client_id, secret)
    assert client_id in worker._cache
    assert operator.revoke(client_id, operator="test", reason="leaked secret")
    took = _rejected_within(worker, client_id, secret, seconds=2.0)
    assert took < 2.0 and client_id not in worker._cache


def test_a_worker_that_lost_its_listener_stops_trusting_its_cache(stores, db_url):
    worker = ClientService(stores[0])
    client_id, secret = worker.create("backend", operator="test", reason="a test client")
    worker.authenticate(client_id, secret)
    _listening(worker)
    worker.authenticate(client_id, secret)
    assert client_id in worker._cache
    with psycopg.connect(db_url, autocommit=True) as conn:
        # the listener's connection dies, and the client is revoked without a notification
        # (as if it was sent while nobody listened)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND query LIKE 'LISTEN %%'")
        conn.execute("UPDATE clients SET revoked_at = now() WHERE id = %s", (client_id,))
    _rejected_within(worker, client_id, secret, seconds=2.0)
    _listening(worker)  # it listens again, with an empty cache
    with pytest.raises(errors.InvalidClient):
        worker.authenticate(client_id, secret)
