"""Fixtures of the fault tests: a throwaway PostgreSQL cluster the tests may kill and restart
(never the shared one), migrated, and the service run as production runs it."""

from __future__ import annotations

import pytest

from authsvc.store import migrate
from tests.faults.pgcluster import PgCluster
from tests.faults.service import ROOT


@pytest.fixture(scope="module")
def pg():
    cluster = PgCluster().init()
    try:
        cluster.start()
        migrate.upgrade(cluster.url, ROOT / "migrations")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_up(pg):
    """The cluster, running (a test that killed it and failed midway leaves it stopped)."""
    if not pg.running:
        pg.start()
    pg.wait_ready()
    return pg
