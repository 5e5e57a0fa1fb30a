"""Password reset (SMS to the registered phone + a second factor) and contact changes."""

from __future__ import annotations

import time

import pytest

from tests.support.flows import bearer, enroll_totp, enroll_webauthn, login_password, new_phone, register
from tests.support.messages import extract_code
from tests.support.soft_authenticator import SoftAuthenticator

NEW_PASSWORD = "a completely new passphrase 77"


@pytest.fixture
def user(client, twilio, smtp):
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    twilio.wait_for(lambda m: "second factor" in m["body"])  # the factor-added notices, then a clean slate
    smtp.wait_for(lambda m: m["subject"] == "Your sign-in methods changed")
    twilio.clear()
    smtp.clear()
    return {**account, "factor": factor}


def reset_sms(twilio, phone):
    return twilio.wait_for(lambda m: m["to"] == phone and "reset code" in m["body"])


def start(client, email):
    r = client.post("/v1/password-resets", json={"email": email})
    assert r.status_code == 202
    return r.get_json()["reset_id"]


def full_reset(client, twilio, user) -> None:
    rid = start(client, user["email"])
    code = extract_code(reset_sms(twilio, user["phone"])["body"])
    sms = client.post(f"/v1/password-resets/{rid}/sms", json={"code": code})
    assert sms.status_code == 200 and sms.get_json()["methods"] == ["totp", "recovery_code"]
    f = client.post(f"/v1/password-resets/{rid}/factor",
                    json={"method": "totp", "code": user["factor"]["totp"].at(time.time() + 30)})
    assert f.status_code == 200, f.get_json()
    done = client.post(f"/v1/password-resets/{rid}/complete",
                       json={"reset_token": f.get_json()["reset_token"], "new_password": NEW_PASSWORD})
    assert done.status_code == 204


def test_reset_needs_sms_and_second_factor_and_revokes_sessions(client, twilio, smtp, user, db):
    code = user["factor"]["totp"].now()
    body = login_password(client, user).get_json()
    # a session that exists before the reset
    recovery = user["factor"]["recovery_codes"][0]
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "recovery_code",
                                                 "code": recovery}).get_json()
    assert code
    full_reset(client, twilio, user)
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401
    assert login_password(client, user).status_code == 401
    assert login_password(client, {**user, "password": NEW_PASSWORD}).status_code == 200
    smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == "Your password was reset")
    twilio.wait_for(lambda m: m["to"] == user["phone"] and "was reset" in m["body"])


def test_unknown_email_gets_the_same_answer_and_no_sms(client, twilio, user):
    known = client.post("/v1/password-resets", json={"email": user["email"]})
    unknown = client.post("/v1/password-resets", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert set(known.get_json()) == set(unknown.get_json()) and known.get_json()["expires_in"] == unknown.get_json()["expires_in"]
    reset_sms(twilio, user["phone"])
    decoy = unknown.get_json()["reset_id"]
    r = client.post(f"/v1/password-resets/{decoy}/sms", json={"code": "123456"})
    assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
    assert len(twilio.snapshot()) == 1


def test_nothing_in_the_request_can_redirect_the_sms(client, twilio, user):
    r = client.post("/v1/password-resets", json={"email": user["email"], "phone": "+819099999999"})
    assert r.status_code == 400
    r = client.post("/v1/password-resets", json={"email": user["email"]},
                    headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 202
    sms = reset_sms(twilio, user["phone"])
    assert sms["to"] == user["phone"] and "evil" not in sms["body"]
    assert [m["to"] for m in twilio.snapshot()] == [user["phone"]]


def test_sms_code_alone_is_not_enough(client, twilio, user):
    rid = start(client, user["email"])
    code = extract_code(reset_sms(twilio, user["phone"])["body"])
    assert client.post(f"/v1/password-resets/{rid}/sms", json={"code": code}).status_code == 200
    done = client.post(f"/v1/password-resets/{rid}/complete", json={"reset_token": "x" * 43, "new_password": NEW_PASSWORD})
    assert done.status_code == 401
    f = client.post(f"/v1/password-resets/{rid}/factor", json={"method": "totp", "code": "000000"})
    assert f.status_code == 400
    # the factor step needs the SMS step first
    rid2 = start(client, user["email"])
    f = client.post(f"/v1/password-resets/{rid2}/factor",
                    json={"method": "totp", "code": user["factor"]["totp"].at(time.time() + 30)})
    assert f.status_code == 400


def test_five_wrong_sms_codes_kill_the_reset(client, twilio, user):
    rid = start(client, user["email"])
    code = extract_code(reset_sms(twilio, user["phone"])["body"])
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(5):
        assert client.post(f"/v1/password-resets/{rid}/sms", json={"code": wrong}).status_code == 400
    assert client.post(f"/v1/password-resets/{rid}/sms", json={"code": code}).status_code == 400


def test_at_most_three_reset_sms_per_hour(make_app, settings, twilio, user):
    client = make_app(settings.replace(rate_limits_enabled=False)).test_client()
    answers = [client.post("/v1/password-resets", json={"email": user["email"]}).status_code for _ in range(5)]
    assert answers == [202] * 5  # the same answer always...
    time.sleep(0.5)
    assert len([m for m in twilio.snapshot() if "reset code" in m["body"]]) == 2  # ...but 2 SMS per client
    # (3 per hour from every client together: test_strangers_on_one_network_...)


def test_strangers_on_one_network_cannot_use_up_the_owners_reset_sms(make_app, settings, twilio, user):
    """The owner lost their phone (no known device left) and asks from their own network: the
    stranger who asked 5 times from another network (IPv4 address, or anywhere in one IPv6 /64)
    has used only part of the anonymous quota. All networks together still send at most 3 an
    hour, so the known device's own quota stays within the SMS cap per number."""
    import ipaddress

    client = make_app(settings.replace(rate_limits_enabled=False,
                                       trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))).test_client()

    def ask(ip):
        return client.post("/v1/password-resets", json={"email": user["email"]},
                           headers={"X-Forwarded-For": ip}).status_code

    def sent():
        time.sleep(0.5)
        return len([m for m in twilio.snapshot() if "reset code" in m["body"]])

    twilio.clear()
    assert [ask(f"2001:db8:7:7::{n + 1:x}") for n in range(5)] == [202] * 5  # one /64, rotating
    assert sent() == 2
    rid = client.post("/v1/password-resets", json={"email": user["email"]},
                      headers={"X-Forwarded-For": "203.0.113.20"}).get_json()["reset_id"]
    assert sent() == 3  # the owner's code went out
    code = extract_code(twilio.snapshot()[-1]["body"])
    assert client.post(f"/v1/password-resets/{rid}/sms", json={"code": code}).status_code == 200
    for n in range(6):  # more networks: the anonymous quota holds in all
        ask(f"198.51.100.{n + 1}")
    assert sent() == 3


def test_reset_with_webauthn_and_token_works_once(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    rid = start(client, account["email"])
    code = extract_code(reset_sms(twilio, account["phone"])["body"])
    sms = client.post(f"/v1/password-resets/{rid}/sms", json={"code": code}).get_json()
    f = client.post(f"/v1/password-resets/{rid}/factor",
                    json={"method": "webauthn", "credential": key.get(sms["webauthn_options"])})
    assert f.status_code == 200
    token = f.get_json()["reset_token"]
    weak = client.post(f"/v1/password-resets/{rid}/complete", json={"reset_token": token, "new_password": "password1"})
    assert weak.status_code == 400 and weak.get_json()["errors"][0]["field"] == "new_password"
    ok = client.post(f"/v1/password-resets/{rid}/complete", json={"reset_token": token, "new_password": NEW_PASSWORD})
    assert ok.status_code == 204
    again = client.post(f"/v1/password-resets/{rid}/complete", json={"reset_token": token, "new_password": NEW_PASSWORD + "!"})
    assert again.status_code == 401


# ---------------------------------------------------------------------------- contact changes
@pytest.fixture
def session(client, user):
    body = login_password(client, user).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "totp",
                                                 "code": user["factor"]["totp"].at(time.time() + 30)}).get_json()
    return tokens


def step_up_contact(client, user, session) -> str:
    auth = bearer(session["access_token"])
    ch = client.post("/v1/step-up", json={"action": "contact.change"}, headers=auth).get_json()
    code = user["factor"]["recovery_codes"][len(user.setdefault("_used", []))]
    user["_used"].append(code)
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify", json={"method": "recovery_code", "code": code},
                    headers=auth)
    assert v.status_code == 200, v.get_json()
    return v.get_json()["step_up_token"]


def test_phone_change_needs_step_up_and_a_code_to_the_new_phone(client, twilio, smtp, user, session, db):
    auth = bearer(session["access_token"])
    phone = new_phone()
    r = client.post("/v1/account/phone", json={"phone": phone}, headers=auth)
    assert r.status_code == 401 and r.get_json()["code"] == "step_up_required"
    token = step_up_contact(client, user, session)
    r = client.post("/v1/account/phone", json={"phone": phone}, headers={**auth, "X-Step-Up-Token": token})
    assert r.status_code == 202
    change_id = r.get_json()["change_id"]
    code = extract_code(twilio.wait_for(lambda m: m["to"] == phone)["body"])
    # until verified, resets still go to the old phone
    client.post("/v1/password-resets", json={"email": user["email"]})
    reset_sms(twilio, user["phone"])
    assert client.post(f"/v1/account/changes/{change_id}/verify", json={"code": code}, headers=auth).status_code == 204
    assert db.execute("SELECT phone FROM accounts").fetchone()[0] == phone
    # the old phone and email are told, with a report link
    old = twilio.wait_for(lambda m: m["to"] == user["phone"] and "was changed" in m["body"])
    assert "https://app.test/report?token=" in old["body"]
    smtp.wait_for(lambda m: m["to"] == user["email"] and "changed" in m["subject"])
    again = client.post(f"/v1/account/changes/{change_id}/verify", json={"code": code}, headers=auth)
    assert again.status_code == 400


def test_email_change_to_a_taken_email_cannot_succeed(client, twilio, smtp, user, session, db):
    other = register(client, twilio, smtp)
    auth = bearer(session["access_token"])
    token = step_up_contact(client, user, session)
    r = client.post("/v1/account/email", json={"email": other["email"].upper()},
                    headers={**auth, "X-Step-Up-Token": token})
    assert r.status_code == 202
    notice = smtp.wait_for(lambda m: m["to"] == other["email"] and "tried" in m["subject"])  # as registered
    with pytest.raises(AssertionError):
        extract_code(notice["body"])
    r = client.post(f"/v1/account/changes/{r.get_json()['change_id']}/verify", json={"code": "000000"}, headers=auth)
    assert r.status_code == 400
    assert db.execute("SELECT count(DISTINCT email_normalized) FROM accounts").fetchone()[0] == 2


def test_email_change_with_wrong_codes_dies_after_five(client, smtp, user, session, db):
    auth = bearer(session["access_token"])
    token = step_up_contact(client, user, session)
    r = client.post("/v1/account/email", json={"email": "new-address@example.com"},
                    headers={**auth, "X-Step-Up-Token": token})
    change_id = r.get_json()["change_id"]
    code = extract_code(smtp.wait_for(lambda m: m["to"] == "new-address@example.com")["body"])
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(5):
        client.post(f"/v1/account/changes/{change_id}/verify", json={"code": wrong}, headers=auth)
    assert client.post(f"/v1/account/changes/{change_id}/verify", json={"code": code}, headers=auth).status_code == 400
    assert db.execute("SELECT email FROM accounts WHERE id = %s", (user["account_id"],)).fetchone()[0] == user["email"]


def test_change_of_another_account_cannot_be_verified(client, twilio, smtp, user, session):
    auth = bearer(session["access_token"])
    token = step_up_contact(client, user, session)
    r = client.post("/v1/account/email", json={"email": "mine@example.com"}, headers={**auth, "X-Step-Up-Token": token})
    change_id = r.get_json()["change_id"]
    code = extract_code(smtp.wait_for(lambda m: m["to"] == "mine@example.com")["body"])
    other = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, other["enrollment_token"], key)
    body = login_password(client, other).get_json()
    theirs = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                                 "credential": key.get(body["webauthn_options"])}).get_json()
    r = client.post(f"/v1/account/changes/{change_id}/verify", json={"code": code},
                    headers=bearer(theirs["access_token"]))
    assert r.status_code == 400
