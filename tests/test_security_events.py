"""New-device sign-in notices, "this wasn't me" reports, and the forced password change."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

from tests.support.flows import bearer, login_password


def login(client, user, **headers):
    body = login_password(client, user, **headers).get_json()
    return client.post(
        "/v1/login/mfa",
        json={"mfa_token": body["mfa_token"], "method": "webauthn", "credential": user["key"].get(body["webauthn_options"])},
        headers=headers,
    )


def report_token(text: str) -> str:
    url = re.search(r"https://app\.test/report\?token=\S+", text).group(0)
    return parse_qs(urlsplit(url).query)["token"][0]


def test_new_device_sends_sms_and_email_with_a_report_link(client, user, twilio, smtp):
    # the device that registered is known: no notice, and it keeps its token
    first = login(client, user, **{"X-Device-Token": user["device_token"], "User-Agent": "App (iPhone)"})
    assert first.status_code == 200 and first.get_json()["device_token"] == user["device_token"]
    time.sleep(0.3)
    assert not [m for m in twilio.snapshot() if "New sign-in" in m["body"]]
    # another device, even one sending the same X-Device-Id and User-Agent, is new
    r = login(client, user, **{"X-Device-Id": "phone-1", "User-Agent": "Mozilla (Windows)"})
    assert r.status_code == 200
    laptop_token = r.get_json()["device_token"]
    assert laptop_token and laptop_token != user["device_token"]
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "New sign-in" in m["body"])
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and "New sign-in" in m["subject"])
    assert "Windows" in mail["body"] and "Windows" in sms["body"]
    assert report_token(mail["body"]) and report_token(sms["body"])
    # that device, now presenting its token, is known: no further notice
    twilio.clear()
    again = login(client, user, **{"X-Device-Token": laptop_token, "User-Agent": "Mozilla (Windows)"})
    assert again.status_code == 200 and again.get_json()["device_token"] == laptop_token
    time.sleep(0.3)
    assert not [m for m in twilio.snapshot() if "New sign-in" in m["body"]]


def test_this_wasnt_me_freezes_the_account_and_revokes_every_session(client, user, twilio, smtp, db):
    first = login(client, user, **{"X-Device-Id": "phone-1"}).get_json()
    smtp.clear()
    second = login(client, user, **{"X-Device-Id": "attacker"}).get_json()
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and "New sign-in" in m["subject"])
    token = report_token(mail["body"])
    r = client.post("/v1/security/reports", json={"report_token": token})
    assert r.status_code == 202
    for tokens in (first, second):
        assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401
        assert client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert db.execute("SELECT status FROM accounts").fetchone()[0] == "frozen"
    # every device token of the account died with the report
    assert db.execute("SELECT count(*) FROM device_tokens WHERE revoked_at IS NULL").fetchone()[0] == 0
    frozen = login(client, user, **{"X-Device-Id": "phone-1"})
    assert frozen.status_code == 403 and frozen.get_json()["code"] == "account_frozen"
    # the report token works once
    again = client.post("/v1/security/reports", json={"report_token": token})
    assert again.status_code == 401
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log").fetchall()]
    assert "account.frozen" in actions


def test_report_with_an_unknown_token_changes_nothing(client, user, db):
    r = client.post("/v1/security/reports", json={"report_token": "x" * 43})
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_token"
    assert db.execute("SELECT status FROM accounts").fetchone()[0] == "active"


def test_forced_password_change_after_both_factors(client, user, twilio, smtp, db):
    tokens = login(client, user).get_json()
    db.execute("UPDATE accounts SET password_change_required = true")
    wrong = client.post("/v1/login", json={"email": user["email"], "password": "not my password at all"})
    assert wrong.status_code == 401
    r = login(client, user)
    assert r.status_code == 403
    problem = r.get_json()
    assert problem["code"] == "password_change_required" and problem["password_change_token"]
    pct = problem["password_change_token"]
    same = client.post("/v1/password-change", json={"password_change_token": pct, "new_password": user["password"]})
    assert same.status_code == 400 and same.get_json()["errors"][0]["field"] == "new_password"
    weak = client.post("/v1/password-change", json={"password_change_token": pct, "new_password": "password123"})
    assert weak.status_code == 400 and weak.get_json()["code"] == "weak_password"
    new = "a brand new passphrase 2026"
    ok = client.post("/v1/password-change", json={"password_change_token": pct, "new_password": new})
    assert ok.status_code == 204
    assert client.post("/v1/password-change", json={"password_change_token": pct, "new_password": new + "x"}).status_code == 401
    # every older session is gone; the old password no longer works; the new one does
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401
    assert login_password(client, user).status_code == 401
    assert login(client, {**user, "password": new}).status_code == 200
    smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == "Your password was changed")
