"""Shared set-up for the benchmarks: a scratch database (AUTHSVC_DATABASE_URL, else an embedded
PostgreSQL), a local fake of Twilio and an SMTP sink, and an app built on them."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from authsvc.app import create_app  # noqa: E402
from authsvc.config import Settings  # noqa: E402
from authsvc.store import embedded, migrate  # noqa: E402
from tests.support.fake_twilio import FakeTwilio  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new, migrated database (in AUTHSVC_DATABASE_URL's server, else an embedded one);
    dropped afterwards. Yields its URL."""
    admin = os.environ.get("AUTHSVC_DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="authsvc-bench-")) / "pgdata", delete_on_exit=True
    )
    dbname = f"authsvc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = make_conninfo(admin, dbname=dbname)
    try:
        migrate.upgrade(url, ROOT / "migrations")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@contextlib.contextmanager
def bench_app() -> Iterator[tuple]:
    """Yields (app, settings, twilio, smtp); everything is dropped afterwards."""
    with scratch_database() as url, FakeTwilio() as twilio, SmtpSink() as smtp:
        settings = Settings(
            database_url=url, migrations_dir=ROOT / "migrations",
            encryption_keys=(("b1", secrets.token_bytes(32)),),
            sms_provider="twilio", twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
            twilio_from="+15005550006", twilio_api_base=twilio.base_url, smtp_url=smtp.url,
            rate_limits_enabled=False,
            # the set-up registers every account from one address (the test client's): the
            # per-client, per-network and global SMS caps are lifted for this in-process app only;
            # a service a benchmark starts with `authsvc serve` keeps the production defaults
            sms_client_hourly_cap=10**6, sms_network_hourly_cap=10**6,
            sms_country_hourly_cap=10**6, sms_hourly_cap=10**6,
        )
        app = create_app(settings)
        try:
            yield app, settings, twilio, smtp
        finally:
            app.extensions["authsvc"].close()
