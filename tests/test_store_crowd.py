"""A crowd never takes the whole pool (``Store.transaction(crowd=True)``): hundreds of sign-ins
may wait at the hash gate at once (issue 16), and their lookups before it hold at most half
the database pool, so a second-factor step or an introspection always finds a connection."""

from __future__ import annotations

import threading

import pytest

from authsvc import errors
from authsvc.store import Store


def test_crowd_transactions_hold_at_most_half_the_pool(db_url):
    store = Store(db_url, max_size=4, timeout=0.5)
    try:
        inside = threading.Barrier(3)
        leave = threading.Event()

        def crowd() -> None:
            with store.transaction(crowd=True):  # holds a pooled connection
                inside.wait(5)
                leave.wait(10)

        holders = [threading.Thread(target=crowd) for _ in range(2)]
        for t in holders:
            t.start()
        inside.wait(5)  # two crowd transactions hold half the pool of 4
        with pytest.raises(errors.StoreUnavailable):  # a third of the crowd waits its turn, then gives up
            with store.transaction(crowd=True):
                pass
        others = [store.transaction() for _ in range(2)]
        for other in others:  # everything else still gets the other half, at once
            other.__enter__()
        for other in others:
            other.__exit__(None, None, None)
        leave.set()
        for t in holders:
            t.join(10)
        with store.transaction(crowd=True):  # the crowd's turn again
            pass
    finally:
        store.close()
