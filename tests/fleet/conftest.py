"""A fleet: three replicas of ``authsvc serve`` (gunicorn, 2 workers each, as production runs
it) on one database and one Redis, started once for the package (the PgBouncer module starts
its own), with the operator's CLI as a separate process. Black-box: the tests talk HTTP to the
replicas and run the CLI. Bounded: every test here takes seconds, not minutes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.faults.service import ROOT, Service, service_env

REPLICAS = 3


@dataclass
class Fleet:
    replicas: list[Service]
    env: dict[str, str]
    database_url: str

    def clients(self, ip: str | None = None):
        """A client of each replica, all from one client address (``ip``, else a new random one:
        the replicas trust 127.0.0.1 as their proxy, so X-Forwarded-For says who the client is)."""
        ip = ip or random_ip()
        return [r.client(headers={"X-Forwarded-For": ip}) for r in self.replicas]

    def cli(self, *args: str, check: bool = True) -> str:
        """Run ``authsvc ARGS`` as the operator would (its own process, the fleet's settings)."""
        done = subprocess.run([sys.executable, "-m", "authsvc.cli", *args], env={**self.env, "AUTHSVC_OPERATOR": "ops"},
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout
        return done.stdout + done.stderr

    def sql(self, query: str, params=None) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def random_ip() -> str:
    """A client address of its own (its own /24 too, so network budgets are not shared)."""
    n = secrets.randbits(24)
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


def redis_url_or_skip() -> str:
    import redis

    url = os.environ.get("AUTHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}: the fleet shares its counters there")
    return url


def clone_database(pg_admin_url: str, template_db: str):
    name = f"authsvc_fleet_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="package")
def fleet_db(pg_admin_url, template_db):
    """The fleet's database, shared by the modules of this package (one fleet for them all)."""
    yield from clone_database(pg_admin_url, template_db)


def start_fleet(database_url: str, twilio, smtp, *, replicas: int = REPLICAS, **extra: str) -> Fleet:
    import redis

    url = redis_url_or_skip()
    prefix = f"authsvc-fleet-{uuid.uuid4().hex[:12]}"
    env = service_env(database_url, twilio, smtp, AUTHSVC_REDIS_URL=url, AUTHSVC_RATE_LIMIT_PREFIX=prefix,
                      AUTHSVC_RATE_LIMITS_PER_PROCESS="false", AUTHSVC_METRICS_BIND="off",
                      AUTHSVC_TRUSTED_PROXIES="127.0.0.1/32",
                      # a loaded CI machine: hashing waits rather than sheds (tests/conftest.py)
                      AUTHSVC_HASH_QUEUE_BUDGET_MS="60000", AUTHSVC_HASH_KNOWN_BUDGET_MS="60000",
                      AUTHSVC_DRAIN_SECONDS="2", **extra)
    services = [Service(env) for _ in range(replicas)]
    for s in services:
        s.launch()
    try:
        with ThreadPoolExecutor(len(services)) as pool:
            list(pool.map(lambda s: s.wait_ready(timeout=120), services))
    except BaseException:
        for s in services:
            s.close()
        raise
    fleet = Fleet(services, env, database_url)
    fleet.redis_prefix = prefix  # type: ignore[attr-defined]
    fleet.redis = redis.Redis.from_url(url)  # type: ignore[attr-defined]
    return fleet


def stop_fleet(fleet: Fleet) -> None:
    for s in fleet.replicas:
        s.signal()
    for s in fleet.replicas:
        s.close()
    keys = list(fleet.redis.scan_iter(match=fleet.redis_prefix + "*", count=1000))  # type: ignore[attr-defined]
    if keys:
        fleet.redis.delete(*keys)  # type: ignore[attr-defined]


@pytest.fixture(scope="package")
def fleet(fleet_db, twilio_server, smtp_server):
    made = start_fleet(fleet_db, twilio_server, smtp_server)
    yield made
    stop_fleet(made)
