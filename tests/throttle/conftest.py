"""Fixtures of the throttle tests (failure budgets, strangers): an app with real Redis counters
behind a trusted proxy, so every request names its client in X-Forwarded-For, and a user with
TOTP. Each test has its own Redis key prefix (``redis_settings``)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support.flows import enroll_totp, register

PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
WRONG = "not the password at all 1"


@pytest.fixture
def tsettings(redis_settings):
    return redis_settings.replace(trusted_proxies=PROXY)


@pytest.fixture
def app(make_app, tsettings):
    return make_app(tsettings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user(client, twilio, smtp):
    account = register(client, twilio, smtp, phone=None)
    factor = enroll_totp(client, account["enrollment_token"])
    return {**account, "recovery_codes": factor["recovery_codes"]}


def attempt(client, email, password, ip, token=None):
    headers = {"X-Forwarded-For": ip}
    if token:
        headers["X-Device-Token"] = token
    return client.post("/v1/login", json={"email": email, "password": password}, headers=headers)
