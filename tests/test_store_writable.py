"""The store serves only from a writable primary (README, "Database failover"): a server that
refuses writes opens the circuit and answers "unavailable" (503), never a storage error (500),
and the circuit closes only once the server accepts writes again."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from authsvc import errors
from authsvc.store import Store


@pytest.fixture
def read_only(db_url, pg_admin_url):
    """Make the test database read-only for new sessions, as a standby or a read-only primary
    is (the server reports default_transaction_read_only=on), and undo it."""
    name = conninfo_to_dict(db_url)["dbname"]

    def set_read_only(on: bool) -> None:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
            # sessions opened before keep their setting: end them, as a failover does
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    yield set_read_only
    set_read_only(False)


def _wait(predicate, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_read_only_server_is_unavailable_not_an_error_and_only_a_writable_one_closes_the_circuit(
        db_url, read_only):
    store = Store(db_url, probe_interval=0.05)
    try:
        with store.transaction() as tx:
            tx.keys.clock()
        read_only(True)
        with pytest.raises(errors.StoreUnavailable):  # the pooled connection was ended
            with store.transaction() as tx:
                tx.keys.lock()
        with pytest.raises(errors.StoreUnavailable):
            with store.transaction() as tx:
                tx.keys.lock()
        assert not store.available
        time.sleep(0.5)  # the prober keeps trying: a read-only server never closes the circuit
        assert not store.available
        read_only(False)
        _wait(lambda: store.available)
        with store.transaction() as tx:
            tx.keys.clock()
    finally:
        store.close()


def test_a_write_refused_as_read_only_on_a_live_connection_is_unavailable(db_url):
    """A connection whose server turns read-only under it (a demoted primary): 25006 is a 503."""
    store = Store(db_url, max_size=1, probe_interval=0.05)
    try:
        with pytest.raises(errors.StoreUnavailable):
            with store.transaction() as tx:
                tx._conn.execute("SET TRANSACTION READ ONLY")
                tx._conn.execute("CREATE TEMP TABLE t (x int)")
        assert not store.available  # the circuit opened: the prober checks the server again
        _wait(lambda: store.available)  # this server is writable: it closes
    finally:
        store.close()
