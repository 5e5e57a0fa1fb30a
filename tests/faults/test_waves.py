"""Room means service (issue 16): with no attack, a wave of sign-ups or first sign-ins from new
devices that the cores can hash within seconds is served, never shed, by the service run as
production runs it (``authsvc serve``: gunicorn, 2 workers, Redis), each client from its own
address (behind a trusted proxy)."""

from __future__ import annotations

import json
import os
import threading
import uuid

import pytest

from tests.faults.service import Service, service_env
from tests.support.flows import STRONG_PASSWORD, new_email, new_phone
from tests.support.messages import extract_code

WAVE_SECONDS = 5.0  # the slowest answer of a wave, as a person waits


@pytest.fixture
def service(db_url, twilio, smtp):
    import redis

    url = os.environ.get("AUTHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    prefix = f"authsvc-test-{uuid.uuid4().hex[:12]}"
    svc = Service(service_env(db_url, twilio, smtp, AUTHSVC_REDIS_URL=url, AUTHSVC_RATE_LIMIT_PREFIX=prefix,
                              AUTHSVC_TRUSTED_PROXIES="127.0.0.1/32", AUTHSVC_RATE_LIMITS_PER_PROCESS="false"))
    svc.start()
    try:
        yield svc
    finally:
        svc.close()
        r = redis.Redis.from_url(url)
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)


def post(svc: Service, path: str, body: dict, ip: str, **headers: str) -> tuple[int, dict, float]:
    status, raw, seconds = svc.request("POST", path, json.dumps(body).encode(), {
        "Content-Type": "application/json", "X-Forwarded-For": ip, **headers}, timeout=30)
    return status, json.loads(raw) if raw else {}, seconds


def wave(n: int, one) -> list[tuple[int, dict, float]]:
    """``n`` requests sent at the same moment, each on its own connection."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        results[i] = one(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_waves_of_sign_ups_and_first_sign_ins_from_new_devices_are_served(service, twilio, smtp):
    people = [{"email": new_email(), "phone": new_phone()} for _ in range(30)]
    signups = wave(30, lambda i: post(service, "/v1/registrations", {
        "email": people[i]["email"], "phone": people[i]["phone"], "password": STRONG_PASSWORD},
        f"2001:db8:5:{i:x}::1"))
    assert [s for s, _, _ in signups] == [202] * 30, [(s, b.get("code"), round(t, 2)) for s, b, t in signups]
    assert max(t for _, _, t in signups) < WAVE_SECONDS

    import pyotp

    for i, (person, (_, body, _)) in enumerate(zip(people, signups, strict=True)):  # they finish signing up
        sms = twilio.wait_for(lambda m, p=person: m["to"] == p["phone"], timeout=15)
        mail = smtp.wait_for(lambda m, p=person: m["to"] == p["email"], timeout=15)
        status, done, _ = post(service, f"/v1/registrations/{body['registration_id']}/verify",
                               {"phone_code": extract_code(sms["body"]), "email_code": extract_code(mail["body"])},
                               f"2001:db8:5:{i:x}::1")
        assert status == 201, done
        auth = {"Authorization": f"Bearer {done['enrollment_token']}"}
        status, factor, _ = post(service, "/v1/factors/totp", {"name": "phone"}, f"2001:db8:5:{i:x}::1", **auth)
        assert status == 201, factor
        status, confirmed, _ = post(service, f"/v1/factors/totp/{factor['factor_id']}/confirm",
                                    {"code": pyotp.TOTP(factor["secret"]).now()}, f"2001:db8:5:{i:x}::1", **auth)
        assert status == 200, confirmed

    # 24 of them on a new phone each (no device token, an address never seen), at one moment
    signins = wave(24, lambda i: post(service, "/v1/login", {
        "email": people[i]["email"], "password": STRONG_PASSWORD}, f"198.51.100.{10 + i}",
        **{"X-Device-Id": f"new-phone-{i}"}))
    assert [s for s, _, _ in signins] == [200] * 24, [(s, b.get("code")) for s, b, _ in signins]
    assert all(b["mfa_token"] for _, b, _ in signins)
    assert max(t for _, _, t in signins) < WAVE_SECONDS
