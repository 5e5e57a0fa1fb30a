"""Failure budgets against the list attack, against real PostgreSQL and real Redis.

The client address comes from X-Forwarded-For (the test client's peer, 127.0.0.1, is the
trusted proxy), as behind the real proxy. Each test has its own Redis key prefix.
"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from authsvc import cli
from tests.support.metrics import metric
from tests.test_webhooks import SECRET, receiver  # noqa: F401 - the receiver fixture
from tests.throttle.conftest import WRONG, attempt


def comparable(resp) -> tuple:
    body = resp.get_json()
    return resp.status_code, json.dumps(body, sort_keys=True), resp.headers.get("Content-Type")


# ---------------------------------------------------------------------------- per email
def test_email_budget_answers_alike_for_registered_and_unknown_emails(client, user, app):
    unknown = "nobody-here@example.com"
    for i in range(10):  # 10 failures from 10 different addresses, for each email
        assert attempt(client, user["email"], WRONG, f"198.51.{i}.10").status_code == 401
        assert attempt(client, unknown, WRONG, f"198.51.{i}.20").status_code == 401
    hashed_before = metric(app, "authsvc_logins_total", step="password")
    registered = attempt(client, user["email"], user["password"], "203.0.113.5")  # even the right password
    other = attempt(client, unknown, WRONG, "203.0.113.6")
    assert registered.status_code == 429 and registered.get_json()["code"] == "rate_limited"
    assert comparable(registered) == comparable(other)
    assert registered.headers["Retry-After"] == other.headers["Retry-After"]
    assert 55 <= int(registered.headers["Retry-After"]) <= 60
    # refused before any password hashing: no login outcome was counted for them
    assert metric(app, "authsvc_logins_total", step="password") == hashed_before
    assert metric(app, "authsvc_throttle_decisions_total", decision="throttled", reason="email") == 2


def test_known_device_is_not_stopped_by_the_429_of_unknown_devices(client, user):
    for i in range(10):
        attempt(client, user["email"], WRONG, f"198.51.{i}.10")
    assert attempt(client, user["email"], user["password"], "198.51.100.1").status_code == 429
    # the owner's device, from the very address that was throttled, signs in completely
    first = attempt(client, user["email"], user["password"], "198.51.0.10", token=user["device_token"])
    assert first.status_code == 200, first.get_json()
    done = client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"], "method": "recovery_code",
                                              "code": user["recovery_codes"].pop()},
                       headers={"X-Device-Token": user["device_token"], "X-Forwarded-For": "198.51.0.10"})
    assert done.status_code == 200 and done.get_json()["device_token"] == user["device_token"]


def test_owner_is_notified_once_per_episode_and_waits_grow(client, user, smtp, tsettings):
    import redis

    r = redis.Redis.from_url(tsettings.redis_url, decode_responses=True)
    smtp.clear()
    for i in range(10):
        attempt(client, user["email"], WRONG, f"198.51.{i}.10")
    smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == "Many failed sign-ins to your account")
    waits = [int(attempt(client, user["email"], WRONG, "203.0.113.9").headers["Retry-After"])]
    for _ in range(8):  # each wait ends (deleted here instead of slept through); one more failure
        for key in r.scan_iter(match=f"{tsettings.rate_limit_prefix}:thr:block:email:*"):
            r.delete(key)
        assert attempt(client, user["email"], WRONG, "203.0.113.9").status_code == 401
        waits.append(int(attempt(client, user["email"], WRONG, "203.0.113.9").headers["Retry-After"]))
    assert waits[:4] == [60, 120, 240, 480]
    assert waits[-1] == 3600 and max(waits) == 3600  # capped at an hour
    time.sleep(0.5)
    notices = [m for m in smtp.snapshot() if m["subject"] == "Many failed sign-ins to your account"]
    assert len(notices) == 1


# ---------------------------------------------------------------------------- per client and network
def test_client_budget_only_failures_count(client, user):
    ip = "192.0.2.77"
    # a carrier NAT: honest correct passwords never use up the budget
    assert all(attempt(client, user["email"], user["password"], ip).status_code == 200 for _ in range(25))
    for i in range(20):  # 20 failures, each for a different email
        assert attempt(client, f"list-{i}@example.com", WRONG, ip).status_code == 401
    assert attempt(client, "list-x@example.com", WRONG, ip).status_code == 429
    assert attempt(client, user["email"], user["password"], ip).status_code == 429  # unknown device
    assert attempt(client, user["email"], user["password"], ip, token=user["device_token"]).status_code == 200
    assert attempt(client, "list-y@example.com", WRONG, "192.0.2.78").status_code == 401  # a neighbour


def test_ipv6_rotation_inside_a_64_is_one_client(client):
    for i in range(20):
        assert attempt(client, f"v6-{i}@example.com", WRONG, f"2001:db8:1:2::{i + 1:x}").status_code == 401
    assert attempt(client, "v6-x@example.com", WRONG, "2001:db8:1:2:ffff::9").status_code == 429
    assert attempt(client, "v6-y@example.com", WRONG, "2001:db8:1:3::1").status_code == 401  # another /64


@pytest.mark.parametrize("addresses,inside,outside", [
    ([f"203.0.113.{i}" for i in range(1, 6)], "203.0.113.200", "203.0.114.1"),
    ([f"2001:db8:aa:{i}::1" for i in range(1, 6)], "2001:db8:aa:ff::1", "2001:db8:ab::1"),
])
def test_network_budget(make_app, tsettings, addresses, inside, outside):
    client = make_app(tsettings.replace(throttle_network_failures=5)).test_client()
    for n, ip in enumerate(addresses):
        assert attempt(client, f"net-{n}@example.com", WRONG, ip).status_code == 401
    assert attempt(client, "net-x@example.com", WRONG, inside).status_code == 429
    assert attempt(client, "net-y@example.com", WRONG, outside).status_code == 401


def test_known_device_has_a_budget_of_its_own(client, user):
    token = user["device_token"]
    for _ in range(10):
        assert attempt(client, user["email"], WRONG, "192.0.2.1", token=token).status_code == 401
    assert attempt(client, user["email"], user["password"], "192.0.2.1", token=token).status_code == 429
    assert attempt(client, user["email"], user["password"], "192.0.2.2").status_code == 200  # others unaffected


# ---------------------------------------------------------------------------- shared, and never open
def test_counts_are_shared_by_every_worker_through_redis(make_app, tsettings):
    one, two = make_app(tsettings).test_client(), make_app(tsettings).test_client()
    for i in range(20):
        assert (one if i % 2 else two).post(
            "/v1/login", json={"email": f"w-{i}@example.com", "password": WRONG},
            headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 401
    assert two.post("/v1/login", json={"email": "w@example.com", "password": WRONG},
                    headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 429


def test_redis_down_falls_back_to_memory_logged_and_counted(make_app, tsettings, caplog):
    down = tsettings.replace(redis_url="redis://127.0.0.1:1/0", rate_limits_enabled=True)
    app = make_app(down)
    client = app.test_client()
    with caplog.at_level("WARNING"):
        for i in range(20):
            assert attempt(client, f"d-{i}@example.com", WRONG, "192.0.2.99").status_code == 401
        assert attempt(client, "d-x@example.com", WRONG, "192.0.2.99").status_code == 429  # never fail open
    assert metric(app, "authsvc_throttle_store_fallback_total") > 0
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- visibility
def test_metrics_never_separate_unknown_emails_from_wrong_passwords(client, user, app):
    attempt(client, user["email"], WRONG, "192.0.2.5")
    attempt(client, "nobody-else@example.com", WRONG, "192.0.2.5")
    text = app.extensions["authsvc"].metrics.render()[0].decode()
    assert "unknown_account" not in text and "wrong_password" not in text
    assert metric(app, "authsvc_logins_total", step="password", outcome="invalid_credentials") == 2
    assert metric(app, "authsvc_throttle_decisions_total", decision="allowed") >= 2


def test_attack_started_and_ended_webhooks(make_app, tsettings, receiver):  # noqa: F811 - the fixture
    app = make_app(tsettings.replace(attack_failures_per_minute=6, webhook_url=receiver.url, webhook_secret=SECRET))
    client = app.test_client()
    for i in range(8):
        attempt(client, f"a-{i}@example.com", WRONG, f"198.18.{i}.1")
    started = receiver.wait_for("attack.started")[0]
    assert started["data"]["level"] == 6 and started["data"]["failures_per_minute"] >= 6
    throttle = app.extensions["authsvc"].throttle
    assert throttle.attack_state()["active"]
    # the rate falls (its counters are dropped here instead of waiting two minutes)
    import redis

    r = redis.Redis.from_url(tsettings.redis_url)
    for key in r.scan_iter(match=f"{tsettings.rate_limit_prefix}:thr:rate:*"):
        r.delete(key)
    throttle._maybe_end_attack(force=True)
    throttle._maybe_end_attack(force=True)  # once only
    assert not throttle.attack_state()["active"]
    receiver.wait_for("attack.ended")
    time.sleep(0.3)
    types = [e[0]["type"] for e in receiver.events]
    assert types.count("attack.started") == 1 and types.count("attack.ended") == 1


def test_cli_lists_and_lifts_throttles_with_an_audited_reason(client, user, tsettings, cli_env, db):
    for i in range(10):
        attempt(client, user["email"], WRONG, f"198.51.{i}.10")
    assert attempt(client, user["email"], user["password"], "203.0.113.1").status_code == 429
    env = {**cli_env, "AUTHSVC_REDIS_URL": tsettings.redis_url, "AUTHSVC_OPERATOR": "alice",
           "AUTHSVC_RATE_LIMIT_PREFIX": tsettings.rate_limit_prefix}
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli.main, list(args), env=env, catch_exceptions=False)

    listed = run("throttles", "list")
    assert listed.exit_code == 0, listed.output
    assert user["email"][:2] + "***@example.com" in listed.output and user["email"] not in listed.output
    lifted = run("throttles", "lift", f"email:{user['email']}", "--reason", "owner called support, verified")
    assert lifted.exit_code == 0, lifted.output
    assert attempt(client, user["email"], user["password"], "203.0.113.1").status_code == 200
    row = db.execute("SELECT actor, detail->>'reason' FROM audit_log WHERE action = 'throttle.lifted'").fetchone()
    assert row == ("operator:alice", "owner called support, verified")


def test_cli_output_escapes_what_an_attacker_typed(client, tsettings, cli_env):
    """A typed email with CR/LF and terminal escapes cannot forge lines ("no throttles") or
    drive the operator's terminal."""
    crafted = "ab@example.com\r\x1b[2K\x1b[1Ano throttles\nattack: none\x1b]0;owned\x07\u202e"
    for i in range(10):
        assert attempt(client, crafted, WRONG, f"198.51.{i}.30").status_code in (400, 401)
    assert attempt(client, crafted, WRONG, "203.0.113.30").status_code == 429
    env = {**cli_env, "AUTHSVC_REDIS_URL": tsettings.redis_url, "AUTHSVC_RATE_LIMIT_PREFIX": tsettings.rate_limit_prefix}
    listed = CliRunner().invoke(cli.main, ["throttles", "list"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    out = listed.output
    assert "\r" not in out and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    lines = out.splitlines()
    assert "no throttles" not in lines and not any(line.startswith("no throttles") for line in lines)
    assert [line for line in lines if line.startswith("attack:")] == [lines[-1]]  # only the real one
    row = next(line for line in lines if line.startswith("email"))
    assert "\\x0d\\x1b[2k" in row.lower() and "\\x0a" in row  # shown, escaped, on the one row


def test_a_sign_in_costs_two_redis_round_trips(app, client, user):
    """Admission reads budgets, waits, in-flight counts and whether an attack is on in one round
    trip; a wrong password's outcome (failures up, in flight down, previous windows read, the
    minute's count towards an attack) in one more; a right one's release in one."""
    throttle = app.extensions["authsvc"].throttle
    real = throttle._counters
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name):
            method = getattr(real, name)

            def call(*args, **kwargs):
                calls.append(name)
                return method(*args, **kwargs)
            return call

    throttle._counters = Counting()
    throttle._attack_checked = time.time()  # the 5-second attack check is not part of a sign-in
    try:
        assert attempt(client, user["email"], WRONG, "198.51.100.77").status_code == 401
        assert calls == ["peek", "move"]
        calls.clear()
        assert attempt(client, "nobody-here@example.com", WRONG, "198.51.100.78").status_code == 401
        assert calls == ["peek", "move"]
        calls.clear()
        assert attempt(client, user["email"], user["password"], "198.51.100.79").status_code == 200
        assert calls == ["peek", "move"]
    finally:
        throttle._counters = real


def test_a_refused_sign_in_costs_no_database_work(app, client, user):
    """Without a device token or a sign-in pass an attempt is charged to its client, network and
    email whatever the account, so it is admitted (or refused) before any database work: a
    list attack's refused requests never reach PostgreSQL, for registered and unknown emails alike."""
    ip = "192.0.2.97"
    for i in range(20):
        assert attempt(client, f"spent-{i}@example.com", WRONG, ip).status_code == 401
    store = app.extensions["authsvc"].store
    real = store.transaction
    opened = []

    def counting(*args, **kwargs):
        opened.append(kwargs)
        return real(*args, **kwargs)

    store.transaction = counting
    try:
        assert attempt(client, "spent-x@example.com", WRONG, ip).status_code == 429
        assert attempt(client, user["email"], user["password"], ip).status_code == 429
        assert opened == []
        # a known device is looked up first (what it is charged to depends on its token)
        assert attempt(client, user["email"], user["password"], ip, token=user["device_token"]).status_code == 200
        assert opened and opened[0] == {"crowd": True}
    finally:
        store.transaction = real
