"""Test fixtures: a real PostgreSQL (AUTHSVC_DATABASE_URL, else an embedded pgserver), a
migrated template database cloned for every test, a local fake of Twilio's HTTP API and a
local SMTP sink. Nothing in the service is mocked."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.store import embedded, migrate
from tests.support.fake_twilio import FakeTwilio
from tests.support.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"


@pytest.fixture(scope="session")
def pg_admin_url():
    url = os.environ.get("AUTHSVC_DATABASE_URL")
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="authsvc-test-pg-"))
    yield embedded.start(base / "pgdata", delete_on_exit=True)


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url):
    name = f"authsvc_tpl_{uuid.uuid4().hex[:12]}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_admin_url, dbname=name)
    migrate.upgrade(url, MIGRATIONS)
    yield name
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_admin_url, template_db):
    """A fresh, migrated database for one test (cloned from the template)."""
    name = f"authsvc_t_{uuid.uuid4().hex[:12]}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    yield make_conninfo(pg_admin_url, dbname=name)
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def twilio_server():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="session")
def smtp_server():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def twilio(twilio_server):
    twilio_server.clear()
    yield twilio_server
    twilio_server.clear()


@pytest.fixture
def smtp(smtp_server):
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


@pytest.fixture
def settings(db_url, twilio, smtp):
    return Settings(
        dev=False,
        database_url=db_url,
        migrations_dir=MIGRATIONS,
        issuer="https://auth.test",
        audience="payments",
        rp_id="localhost",
        rp_name="authsvc test",
        origins=("http://localhost:8000",),
        public_url="https://auth.test",
        report_url="https://app.test/report?token={token}",
        encryption_keys=(("t1", secrets.token_bytes(32)),),
        sms_provider="twilio",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from="+15005550006",
        twilio_api_base=twilio.base_url,
        smtp_url=smtp.url,
        email_from="authsvc <no-reply@auth.test>",
        # Tests race many requests on a shared, loaded machine: hashing waits rather than sheds
        # here (tests/test_hash_gate.py sets short budgets to test shedding).
        hash_queue_budget=60.0,
        hash_known_budget=60.0,
    )


@pytest.fixture
def cli_env(settings):
    """The production environment variables that describe ``settings``, for CLI tests."""
    from tests.support.env import settings_env

    return {**settings_env(settings), "AUTHSVC_PUBLIC_URL": "https://auth.test"}


@pytest.fixture
def make_app():
    """Build apps from settings; every one is closed (pool, outbox thread) after the test."""
    apps = []

    def _make(settings: Settings, **kwargs):
        app = create_app(settings, **kwargs)
        app.testing = True
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["authsvc"].close()


@pytest.fixture
def app(make_app, settings):
    return make_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(db_url):
    """A direct connection to the test database, for asserting what was stored."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def redis_settings(settings):
    """``settings`` with the machine's Redis (AUTHSVC_TEST_REDIS_URL, default 127.0.0.1:6379)
    under a key prefix of this test's own; its keys are deleted afterwards (never FLUSHDB: the
    Redis may be shared)."""
    import redis

    url = os.environ.get("AUTHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    prefix = f"authsvc-test-{uuid.uuid4().hex[:12]}"
    yield settings.replace(redis_url=url, rate_limit_prefix=prefix)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def user(client, twilio, smtp):
    """A registered account with one WebAuthn key (``user["key"]``); test modules that need
    another kind of user define their own ``user``."""
    from tests.support.flows import enroll_webauthn, register
    from tests.support.soft_authenticator import SoftAuthenticator

    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    return {**account, "key": key}
