"""Redis for a fleet (README, "A fleet of replicas"): a Sentinel-watched Redis
(``AUTHSVC_REDIS_URL=redis+sentinel://...``) shares the rate limits and failure budgets of
every worker and replica, and losing Redis keeps the documented fallback: each process counts
in memory, weaker but never open, and never a 500."""

from __future__ import annotations

import shutil

import pytest

from authsvc.config import Settings
from authsvc.errors import ConfigError
from tests.support.redis_sentinel import Sentinel

WRONG = "not the password at all 1"


@pytest.fixture
def sentinel(redis_settings):
    if not (shutil.which("redis-server") or shutil.which("redis-sentinel")):
        pytest.skip("redis-server (Debian's redis-server package) is not installed: no Sentinel to start")
    s = Sentinel().start()
    yield s
    s.stop()


def _registration_start(client, ip="192.0.2.77"):
    # registration.start is limited per client IP (5/minute); an empty body still counts
    return client.post("/v1/registrations", json={}, headers={"X-Forwarded-For": ip})


def _login(client, email, ip):
    return client.post("/v1/login", json={"email": email, "password": WRONG}, headers={"X-Forwarded-For": ip})


def test_a_sentinel_url_shares_limits_and_budgets_between_replicas(make_app, redis_settings, sentinel):
    import ipaddress

    settings = redis_settings.replace(redis_url=sentinel.url,
                                      trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    one, two = make_app(settings).test_client(), make_app(settings).test_client()
    # the per-IP rate limit: 5 a minute in total, whichever replica answers
    statuses = [_registration_start(one if i % 2 else two).status_code for i in range(6)]
    assert statuses[:5] == [400] * 5 and statuses[5] == 429, statuses
    # the failure budget of a client address (20 by default), counted across both
    for i in range(20):
        assert _login(one if i % 2 else two, f"s-{i}@example.com", "192.0.2.78").status_code == 401
    assert _login(two, "s-x@example.com", "192.0.2.78").status_code == 429
    # the counters are in the Redis the Sentinel names, under the fleet's prefix
    import redis

    assert list(redis.Redis(port=6379).scan_iter(match=settings.rate_limit_prefix + "*", count=1000))


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/nobody"],
                         ids=["redis-down", "sentinel-down"])
def test_losing_redis_counts_in_memory_never_open_never_a_500(make_app, redis_settings, url):
    import ipaddress

    settings = redis_settings.replace(redis_url=url, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    client = make_app(settings).test_client()
    statuses = [_registration_start(client).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429], statuses  # the rate limit holds, in this process
    for i in range(20):
        assert _login(client, f"d-{i}@example.com", "192.0.2.79").status_code == 401
    assert _login(client, "d-x@example.com", "192.0.2.79").status_code == 429


def _env(**extra):
    import secrets

    return {
        "AUTHSVC_DATABASE_URL": "postgresql://x@127.0.0.1/x", "AUTHSVC_SMS_PROVIDER": "twilio",
        "AUTHSVC_TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "AUTHSVC_TWILIO_AUTH_TOKEN": secrets.token_hex(20),
        "AUTHSVC_TWILIO_FROM": "+15005550006", "AUTHSVC_SMTP_URL": "smtp://127.0.0.1:1025",
        "AUTHSVC_SMS_COUNTRIES": "JP", "AUTHSVC_PUBLIC_URL": "https://auth.test",
        "AUTHSVC_ENCRYPTION_KEY": "k1:" + __import__("base64").b64encode(secrets.token_bytes(32)).decode(),
        **extra,
    }


def test_redis_urls_accepted_and_refused():
    for url in ("redis://r:6379/0", "rediss://r:6380/1", "unix:///run/redis.sock",
                "redis+sentinel://s1:26379,s2:26379,s3/mymaster", "redis+sentinel://:pw@s1:26379/mymaster"):
        assert Settings.from_env(_env(AUTHSVC_REDIS_URL=url)).redis_url == url
    for url in ("http://r:6379", "redis+sentinel://s1:26379", "redis+sentinel://s1:x/m", "redis+sentinel://s1/m/0"):
        with pytest.raises(ConfigError, match="AUTHSVC_REDIS_URL"):
            Settings.from_env(_env(AUTHSVC_REDIS_URL=url))
