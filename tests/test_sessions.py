"""Session lifetime (absolute and idle) and refresh-token reuse under concurrency, over HTTP
against the real database."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_webauthn, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator


@pytest.fixture
def key_account(client, twilio, smtp):
    account = register(client, twilio, smtp)
    authenticator = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], authenticator)
    return {**account, "authenticator": authenticator}


def sign_in(client, acct) -> dict:
    body = login_password(client, acct).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": acct["authenticator"].get(body["webauthn_options"])})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def refresh(client, token: str):
    return client.post("/v1/token/refresh", json={"refresh_token": token})


# ---------------------------------------------------------------------------- lifetime
def test_a_session_ends_at_max_age_after_auth_time_however_often_refreshed(client, key_account, db):
    tokens = sign_in(client, key_account)
    for _ in range(3):
        r = refresh(client, tokens["refresh_token"])
        assert r.status_code == 200
        tokens = r.get_json()
    # the sign-in was 31 days ago, the session has been in use all along
    db.execute("UPDATE sessions SET auth_time = now() - interval '31 days', created_at = now() - interval '31 days'")
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.get("/v1/sessions", headers=bearer(tokens["access_token"])).status_code == 401


def test_a_session_just_inside_max_age_still_refreshes(client, key_account, db):
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET auth_time = now() - interval '29 days'")
    r = refresh(client, tokens["refresh_token"])
    assert r.status_code == 200
    # the new refresh token cannot outlive the session
    row = db.execute(
        "SELECT r.expires_at <= s.auth_time + interval '30 days' FROM refresh_tokens r "
        "JOIN sessions s ON s.id = r.session_id WHERE r.used_at IS NULL"
    ).fetchone()
    assert row[0] is True


def test_an_idle_session_ends_after_the_idle_timeout(client, key_account, db):
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET last_seen_at = now() - interval '8 days'")
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401


def test_refreshing_counts_as_use_for_the_idle_timeout(client, key_account, db):
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET last_seen_at = now() - interval '6 days'")
    r = refresh(client, tokens["refresh_token"])
    assert r.status_code == 200
    idle = db.execute("SELECT now() - last_seen_at < interval '1 minute' FROM sessions").fetchone()[0]
    assert idle is True


def test_lifetimes_are_configurable(make_app, settings, key_account, db):
    app = make_app(settings.replace(session_max_age=3600, session_idle_timeout=600))
    client = app.test_client()
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET last_seen_at = now() - interval '11 minutes'")
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET auth_time = now() - interval '61 minutes' WHERE revoked_at IS NULL")
    assert refresh(client, tokens["refresh_token"]).status_code == 401


def test_expired_sessions_are_not_listed(client, key_account, db):
    old = sign_in(client, key_account)
    current = sign_in(client, key_account)
    db.execute("UPDATE sessions SET auth_time = now() - interval '31 days' WHERE id = %s", (old["session_id"],))
    listed = client.get("/v1/sessions", headers=bearer(current["access_token"])).get_json()
    assert [s["session_id"] for s in listed] == [current["session_id"]]


def backend_auth(app) -> dict:
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_introspection_reports_an_expired_session_inactive(app, client, key_account, db):
    tokens = sign_in(client, key_account)
    auth = backend_auth(app)
    assert client.post("/v1/introspect", json={"token": tokens["access_token"]}, headers=auth).get_json()["active"]
    db.execute("UPDATE sessions SET last_seen_at = now() - interval '8 days'")
    assert client.post("/v1/introspect", json={"token": tokens["access_token"]},
                       headers=auth).get_json() == {"active": False}


# ---------------------------------------------------------------------------- concurrent reuse
def test_concurrent_replays_of_a_used_refresh_token_all_answer_401_and_revoke_once(
    app, key_account, db, caplog
):
    client = app.test_client()
    tokens = sign_in(client, key_account)
    assert refresh(client, tokens["refresh_token"]).status_code == 200  # now it is a used token
    caplog.set_level(logging.ERROR)
    statuses = race([lambda: refresh(app.test_client(), tokens["refresh_token"]).status_code] * 8)
    assert statuses == [401] * 8
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    revoked = db.execute("SELECT revoked_at IS NOT NULL, revoked_reason FROM sessions").fetchall()
    assert revoked == [(True, "refresh_token_reuse")]
    audited = db.execute("SELECT count(*) FROM audit_log WHERE action = 'session.refresh_reuse'").fetchone()[0]
    assert audited == 1


def test_concurrent_presentations_of_a_live_refresh_token_rotate_once_then_revoke(app, key_account, db, caplog):
    client = app.test_client()
    tokens = sign_in(client, key_account)
    caplog.set_level(logging.ERROR)
    statuses = race([lambda: refresh(app.test_client(), tokens["refresh_token"]).status_code] * 8)
    # one rotation wins; every other presentation is a replay: 401, and the session dies once
    assert sorted(statuses) == [200] + [401] * 7
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert db.execute("SELECT revoked_reason FROM sessions").fetchall() == [("refresh_token_reuse",)]
    audited = db.execute("SELECT count(*) FROM audit_log WHERE action = 'session.refresh_reuse'").fetchone()[0]
    assert audited == 1
    assert db.execute("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL").fetchone()[0] == 0


# ---------------------------------------------------------------------------- step-up age
PAYMENT = {"action": "payment.authorize", "transaction": {"amount": "1200", "currency": "JPY", "payee": "m-1"}}


def test_payment_step_up_refuses_a_session_signed_in_too_long_ago(client, key_account, db):
    tokens = sign_in(client, key_account)
    auth = bearer(tokens["access_token"])
    ok = client.post("/v1/step-up", json=PAYMENT, headers=auth)
    assert ok.status_code == 201
    db.execute("UPDATE sessions SET auth_time = now() - interval '25 hours'")
    r = client.post("/v1/step-up", json=PAYMENT, headers=auth)
    assert r.status_code == 401
    body = r.get_json()
    assert body["code"] == "reauthentication_required" and body["max_age"] == 86400
    assert 'error="insufficient_user_authentication"' in r.headers["WWW-Authenticate"]
    assert 'max_age="86400"' in r.headers["WWW-Authenticate"]
    # a challenge made while the sign-in was recent cannot be answered once it is not
    ch = ok.get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": key_account["authenticator"].get(ch["webauthn_options"])},
                    headers=auth)
    assert v.status_code == 401 and v.get_json()["code"] == "reauthentication_required"
    # other actions are not payments; a fresh sign-in may pay again
    assert client.post("/v1/step-up", json={"action": "factor.add"}, headers=auth).status_code == 201
    fresh = sign_in(client, key_account)
    assert client.post("/v1/step-up", json=PAYMENT, headers=bearer(fresh["access_token"])).status_code == 201


def test_payment_session_age_is_configurable(make_app, settings, key_account, db):
    client = make_app(settings.replace(payment_max_session_age=600)).test_client()
    tokens = sign_in(client, key_account)
    db.execute("UPDATE sessions SET auth_time = now() - interval '11 minutes'")
    r = client.post("/v1/step-up", json=PAYMENT, headers=bearer(tokens["access_token"]))
    assert r.status_code == 401 and r.get_json()["max_age"] == 600


def test_step_up_token_of_an_expired_session_cannot_be_redeemed(app, client, key_account, db):
    tokens = sign_in(client, key_account)
    auth = bearer(tokens["access_token"])
    ch = client.post("/v1/step-up", json=PAYMENT, headers=auth).get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": key_account["authenticator"].get(ch["webauthn_options"])},
                    headers=auth)
    assert v.status_code == 200
    db.execute("UPDATE sessions SET last_seen_at = now() - interval '8 days'")
    r = client.post("/v1/step-up/redeem", headers=backend_auth(app),
                    json={"step_up_token": v.get_json()["step_up_token"], **PAYMENT})
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_token"


def test_session_lifetimes_come_from_the_environment(tmp_path):
    from authsvc.config import Settings
    from authsvc.errors import ConfigError

    base = {"AUTHSVC_ENCRYPTION_KEY": base64.b64encode(bytes(range(32))).decode(), "AUTHSVC_DATA_DIR": str(tmp_path)}
    s = Settings.from_env(base, dev=True)
    assert (s.session_max_age, s.session_idle_timeout, s.payment_max_session_age) == (2592000, 604800, 86400)
    s = Settings.from_env({**base, "AUTHSVC_SESSION_MAX_AGE": "86400", "AUTHSVC_SESSION_IDLE_TIMEOUT": "3600",
                           "AUTHSVC_PAYMENT_MAX_SESSION_AGE": "900"}, dev=True)
    assert (s.session_max_age, s.session_idle_timeout, s.payment_max_session_age) == (86400, 3600, 900)
    with pytest.raises(ConfigError, match="SESSION_IDLE_TIMEOUT must not exceed"):
        Settings.from_env({**base, "AUTHSVC_SESSION_MAX_AGE": "3600", "AUTHSVC_SESSION_IDLE_TIMEOUT": "7200"},
                          dev=True)


# ---------------------------------------------------------------------------- a stolen refresh token
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")


def test_a_refresh_from_another_device_notifies_the_owner_and_the_list_shows_where(
        make_app, settings, key_account, twilio, smtp):
    import ipaddress

    client = make_app(settings.replace(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))).test_client()
    body = login_password(client, key_account, **{"User-Agent": IPHONE, "X-Forwarded-For": "198.51.100.7"}).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                                "credential": key_account["authenticator"].get(body["webauthn_options"])},
                         headers={"User-Agent": IPHONE, "X-Forwarded-For": "198.51.100.7",
                                  "X-Device-Token": key_account["device_token"]}).get_json()
    smtp.clear()
    # the owner's own phone, from another network: no notice, but the list shows the new address
    mine = client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]},
                       headers={"User-Agent": IPHONE, "X-Forwarded-For": "198.51.100.8"})
    assert mine.status_code == 200
    listed = client.get("/v1/sessions", headers=bearer(mine.get_json()["access_token"])).get_json()
    assert [s["ip"] for s in listed] == ["198.51.100.8"]
    # the refresh token copied to a Windows PC, used from elsewhere
    stolen = client.post("/v1/token/refresh", json={"refresh_token": mine.get_json()["refresh_token"]},
                         headers={"User-Agent": WINDOWS, "X-Forwarded-For": "203.0.113.66"})
    assert stolen.status_code == 200
    mail = smtp.wait_for(lambda m: m["to"] == key_account["email"] and m["subject"] == "New sign-in to your account")
    assert "203.0.113.66" in mail["body"] and "Windows" in mail["body"] and "/report?token=" in mail["body"]
    twilio.wait_for(lambda m: m["to"] == key_account["phone"] and "New sign-in" in m["body"])
    listed = client.get("/v1/sessions", headers=bearer(stolen.get_json()["access_token"])).get_json()
    assert [(s["ip"], "Windows" in (s["device_name"] or "")) for s in listed] == [("203.0.113.66", True)]
    assert len([m for m in smtp.snapshot() if m["subject"] == "New sign-in to your account"]) == 1
    # a device token that is not the session's is another device too
    smtp.clear()
    other = client.post("/v1/token/refresh", json={"refresh_token": stolen.get_json()["refresh_token"]},
                        headers={"User-Agent": WINDOWS, "X-Device-Token": "x" * 43})
    assert other.status_code == 200
    smtp.wait_for(lambda m: m["to"] == key_account["email"] and m["subject"] == "New sign-in to your account")
