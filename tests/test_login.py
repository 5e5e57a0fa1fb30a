"""Login with a mandatory second factor, over HTTP against the real database.

TOTP codes come from pyotp acting as an independent authenticator app; WebAuthn answers come
from a software authenticator whose attestation and assertions py_webauthn really verifies.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.support.concurrency import race
from tests.support.flows import (
    bearer,
    enroll_totp,
    enroll_webauthn,
    login_password,
    register,
)
from tests.support.messages import extract_code
from tests.support.soft_authenticator import SoftAuthenticator


@pytest.fixture
def account(client, twilio, smtp):
    return register(client, twilio, smtp)


@pytest.fixture
def totp_account(client, account):
    factor = enroll_totp(client, account["enrollment_token"])
    return {**account, "factor": factor}


@pytest.fixture
def key_account(client, account):
    authenticator = SoftAuthenticator()
    enrolled = enroll_webauthn(client, account["enrollment_token"], authenticator)
    return {**account, "authenticator": authenticator, "enrolled": enrolled}


def webauthn_login(client, acct, **headers) -> dict:
    r = login_password(client, acct, **headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assertion = acct["authenticator"].get(body["webauthn_options"])
    m = client.post(
        "/v1/login/mfa",
        json={"mfa_token": body["mfa_token"], "method": "webauthn", "credential": assertion},
        headers=headers,
    )
    assert m.status_code == 200, m.get_json()
    return m.get_json()


def mfa(client, mfa_token, method, **kw):
    return client.post("/v1/login/mfa", json={"mfa_token": mfa_token, "method": method, **kw})


def verify_with_jwks(client, token: str) -> dict:
    jwks = client.get("/.well-known/jwks.json").get_json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["ES256"], audience="payments", issuer="https://auth.test"
    )


# ---------------------------------------------------------------------------- TOTP
def test_totp_enrollment_returns_ten_recovery_codes_once(client, account, db):
    factor = enroll_totp(client, account["enrollment_token"])
    codes = factor["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c.replace("-", "")) == 16 for c in codes)  # 16 symbols of 31: ~79 bits
    assert factor["otpauth_uri" if "otpauth_uri" in factor else "status"] == "active"
    stored = [bytes(r[0]) for r in db.execute("SELECT code_hash FROM recovery_codes").fetchall()]
    assert len(stored) == 10 and not any(c.encode() in s for c in codes for s in stored)
    secret_enc = db.execute("SELECT totp_secret_enc FROM factors").fetchone()[0]
    assert factor["secret"] not in secret_enc and secret_enc.startswith("v1.")
    # the enrollment token died with the first factor
    again = client.post("/v1/factors/totp", json={}, headers=bearer(account["enrollment_token"]))
    assert again.status_code == 401 and again.get_json()["code"] == "invalid_token"


def test_totp_secret_is_made_by_the_server(client, account):
    r = client.post(
        "/v1/factors/totp", json={"secret": "JBSWY3DPEHPK3PXP"}, headers=bearer(account["enrollment_token"])
    )
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "secret"
    r = client.post("/v1/factors/totp", json={}, headers=bearer(account["enrollment_token"]))
    body = r.get_json()
    assert len(body["secret"]) >= 32 and body["otpauth_uri"].startswith("otpauth://totp/")


def test_pending_totp_needs_a_valid_code(client, account):
    token = account["enrollment_token"]
    begun = client.post("/v1/factors/totp", json={}, headers=bearer(token)).get_json()
    r = client.post(f"/v1/factors/totp/{begun['factor_id']}/confirm", json={"code": "000000"}, headers=bearer(token))
    assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
    # while unconfirmed the account has no factor: login still takes the SMS path
    r = login_password(client, account)
    assert r.get_json()["methods"] == ["sms"]


def test_pending_totp_dies_after_five_wrong_codes(client, account, db):
    import pyotp

    token = account["enrollment_token"]
    begun = client.post("/v1/factors/totp", json={}, headers=bearer(token)).get_json()
    totp = pyotp.TOTP(begun["secret"])
    near = {totp.at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in near)
    confirm = f"/v1/factors/totp/{begun['factor_id']}/confirm"
    for _ in range(5):
        r = client.post(confirm, json={"code": wrong}, headers=bearer(token))
        assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
    # every failed attempt was committed although its request failed
    assert db.execute("SELECT confirm_attempts FROM factors").fetchone()[0] == 5
    assert client.post(confirm, json={"code": totp.now()}, headers=bearer(token)).status_code == 400
    assert db.execute("SELECT status, confirm_attempts FROM factors").fetchone() == ("pending", 5)


def test_login_with_totp_issues_tokens_with_contract_claims(client, totp_account):
    r = login_password(client, totp_account)
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == {"mfa_token", "expires_in", "methods"}
    assert body["methods"] == ["totp", "recovery_code"]
    code = totp_account["factor"]["totp"].at(time.time() + 30)
    m = mfa(client, body["mfa_token"], "totp", code=code)
    assert m.status_code == 200, m.get_json()
    tokens = m.get_json()
    assert tokens["token_type"] == "Bearer" and tokens["acr"] == "aal2"
    assert tokens["amr"] == ["pwd", "otp", "mfa"]
    claims = verify_with_jwks(client, tokens["access_token"])
    assert claims["sub"] == totp_account["account_id"] and claims["sid"] == tokens["session_id"]
    assert claims["acr"] == "aal2" and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["exp"] - claims["iat"] == 600 and {"jti", "auth_time"} <= set(claims)
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"
    acct = client.get("/v1/account", headers=bearer(tokens["access_token"]))
    assert acct.status_code == 200
    info = acct.get_json()
    assert info["email"] == totp_account["email"] and info["status"] == "active"
    assert info["phone_masked"].endswith(totp_account["phone"][-2:]) and totp_account["phone"] not in json.dumps(info)
    assert [f["type"] for f in info["factors"]] == ["totp"]


def test_totp_code_is_never_accepted_twice_nor_an_earlier_step(client, totp_account):
    totp = totp_account["factor"]["totp"]
    later = totp.at(time.time() + 30)
    first = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "totp", code=later)
    assert first.status_code == 200
    replay = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "totp", code=later)
    assert replay.status_code == 401 and replay.get_json()["code"] == "invalid_factor"
    earlier = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "totp", code=totp.now())
    assert earlier.status_code == 401


@pytest.mark.parametrize("code", [" 123456", "１２３４５６", "12345", "1234567", "12345a"])
def test_malformed_totp_codes_are_rejected(client, totp_account, code):
    r = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "totp", code=code)
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_factor"


def test_wrong_password_and_unknown_email_answer_alike(client, totp_account):
    wrong = client.post("/v1/login", json={"email": totp_account["email"], "password": "not the password at all"})
    unknown = client.post("/v1/login", json={"email": "nobody@example.com", "password": "not the password at all"})
    garbage = client.post("/v1/login", json={"email": "not-an-email", "password": "not the password at all"})
    for r in (wrong, unknown, garbage):
        assert r.status_code == 401
        assert {k: v for k, v in r.get_json().items()} == wrong.get_json()


def test_password_step_gives_nothing_usable_as_a_session(client, totp_account):
    mfa_token = login_password(client, totp_account).get_json()["mfa_token"]
    assert client.get("/v1/account", headers=bearer(mfa_token)).status_code == 401
    assert client.post("/v1/token/refresh", json={"refresh_token": mfa_token}).status_code == 401


def test_mfa_token_dies_after_five_wrong_answers(client, totp_account):
    mfa_token = login_password(client, totp_account).get_json()["mfa_token"]
    for _ in range(5):
        assert mfa(client, mfa_token, "totp", code="000000").status_code == 401
    good = totp_account["factor"]["totp"].at(time.time() + 30)
    assert mfa(client, mfa_token, "totp", code=good).status_code == 401


def test_mfa_token_works_once_under_concurrency(app, totp_account):
    mfa_token = login_password(app.test_client(), totp_account).get_json()["mfa_token"]
    code = totp_account["factor"]["totp"].at(time.time() + 30)
    statuses = race([lambda: mfa(app.test_client(), mfa_token, "totp", code=code).status_code] * 6)
    assert sorted(statuses) == [200] + [401] * 5


def test_method_not_offered_is_rejected(client, totp_account):
    mfa_token = login_password(client, totp_account).get_json()["mfa_token"]
    r = mfa(client, mfa_token, "sms", code="123456")
    assert r.status_code == 401


# ---------------------------------------------------------------------------- recovery codes
def test_recovery_code_works_once(client, totp_account):
    code = totp_account["factor"]["recovery_codes"][0]
    first = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "recovery_code", code=code.upper())
    assert first.status_code == 200 and first.get_json()["acr"] == "aal2"
    again = mfa(client, login_password(client, totp_account).get_json()["mfa_token"], "recovery_code", code=code)
    assert again.status_code == 401


def test_one_recovery_code_succeeds_once_under_concurrency(app, totp_account):
    client = app.test_client()
    code = totp_account["factor"]["recovery_codes"][1]
    tokens = [login_password(client, totp_account).get_json()["mfa_token"] for _ in range(6)]
    statuses = race(
        [lambda t=t: mfa(app.test_client(), t, "recovery_code", code=code).status_code for t in tokens]
    )
    assert sorted(statuses) == [200] + [401] * 5


# ---------------------------------------------------------------------------- account-wide throttle
def test_only_failures_count_on_the_password_step(client, totp_account):
    # many honest users behind one carrier NAT: correct passwords are never throttled
    statuses = [login_password(client, totp_account).status_code for _ in range(25)]
    assert statuses == [200] * 25


def test_wrong_answers_across_tokens_lock_the_account_and_notify(client, totp_account, smtp, db):
    smtp.clear()
    for _ in range(2):
        mfa_token = login_password(client, totp_account).get_json()["mfa_token"]
        for _ in range(5):
            assert mfa(client, mfa_token, "totp", code="000000").status_code == 401
    locked = login_password(client, totp_account)
    assert locked.status_code == 429 and locked.get_json()["code"] == "rate_limited"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    notice = smtp.wait_for(lambda m: m["to"] == totp_account["email"] and "paused" in m["subject"])
    assert "15 minutes" in notice["body"]
    # a wrong password still says only "invalid credentials": the lock reveals nothing
    wrong = client.post("/v1/login", json={"email": totp_account["email"], "password": "wrong password here"})
    assert wrong.status_code == 401
    # the lock is never permanent
    db.execute("UPDATE accounts SET locked_until = now() - interval '1 second'")
    assert login_password(client, totp_account).status_code == 200


def test_lock_delays_grow_and_cap_at_an_hour(make_app, settings, totp_account, db):
    client = make_app(settings.replace(rate_limits_enabled=False)).test_client()  # per account, not per IP

    def ten_failures():
        for _ in range(2):
            mfa_token = login_password(client, totp_account).get_json()["mfa_token"]
            for _ in range(5):
                mfa(client, mfa_token, "totp", code="000000")

    delays = []
    for _ in range(8):
        db.execute("DELETE FROM factor_failures")
        db.execute("UPDATE accounts SET locked_until = NULL")
        ten_failures()
        delays.append(db.execute("SELECT extract(epoch FROM locked_until - now()) FROM accounts").fetchone()[0])
    assert all(b >= a - 5 for a, b in zip(delays, delays[1:], strict=False))  # measured a moment after locking
    assert delays[3] > 2 * delays[0]
    assert delays[0] <= 61 and 3500 <= delays[-1] <= 3601


# ---------------------------------------------------------------------------- WebAuthn
def test_webauthn_enrollment_and_login_are_aal3(client, key_account, db):
    assert len(key_account["enrolled"]["recovery_codes"]) == 10
    r = login_password(client, key_account)
    body = r.get_json()
    assert body["methods"] == ["webauthn", "recovery_code"]
    assert body["webauthn_options"]["userVerification"] == "required"
    tokens = webauthn_login(client, key_account)
    assert tokens["acr"] == "aal3" and tokens["amr"] == ["pwd", "hwk", "mfa"]
    assert db.execute("SELECT sign_count FROM factors").fetchone()[0] == key_account["authenticator"].sign_count


def test_webauthn_counter_regression_is_rejected_and_recorded(client, key_account, db):
    webauthn_login(client, key_account)
    key_account["authenticator"].sign_count = 0  # a clone with an old counter
    body = login_password(client, key_account).get_json()
    assertion = key_account["authenticator"].get(body["webauthn_options"])
    r = mfa(client, body["mfa_token"], "webauthn", credential=assertion)
    assert r.status_code == 401
    assert db.execute("SELECT counter_regressions FROM factors").fetchone()[0] == 1


def test_webauthn_assertion_cannot_be_replayed(client, key_account):
    body = login_password(client, key_account).get_json()
    assertion = key_account["authenticator"].get(body["webauthn_options"])
    assert mfa(client, body["mfa_token"], "webauthn", credential=assertion).status_code == 200
    body2 = login_password(client, key_account).get_json()
    assert mfa(client, body2["mfa_token"], "webauthn", credential=assertion).status_code == 401


def test_webauthn_credential_of_another_account_is_refused(client, twilio, smtp, key_account):
    other = register(client, twilio, smtp)
    other_key = SoftAuthenticator()
    enroll_webauthn(client, other["enrollment_token"], other_key)
    body = login_password(client, key_account).get_json()
    assertion = other_key.get(body["webauthn_options"], credential_id=other_key.credential_id)
    assert mfa(client, body["mfa_token"], "webauthn", credential=assertion).status_code == 401


def test_webauthn_credential_cannot_be_registered_twice(client, twilio, smtp, key_account):
    other = register(client, twilio, smtp)
    token = other["enrollment_token"]
    options = client.post("/v1/factors/webauthn/options", json={}, headers=bearer(token)).get_json()["options"]
    same_key = key_account["authenticator"]
    credential = same_key.create(options)  # same credential id, new registration ceremony
    r = client.post("/v1/factors/webauthn", json={"credential": credential, "name": "stolen"}, headers=bearer(token))
    assert r.status_code == 409 and r.get_json()["code"] == "credential_exists"


def test_webauthn_registration_challenge_works_once(client, account):
    token = account["enrollment_token"]
    authenticator = SoftAuthenticator()
    options = client.post("/v1/factors/webauthn/options", json={}, headers=bearer(token)).get_json()["options"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    credential = authenticator.create(options)
    assert client.post("/v1/factors/webauthn", json={"credential": credential}, headers=bearer(token)).status_code == 201
    # the enrollment token is spent; even a fresh session could not reuse the challenge
    second = client.post("/v1/factors/webauthn", json={"credential": credential}, headers=bearer(token))
    assert second.status_code == 401


# ---------------------------------------------------------------------------- SMS path
def test_account_without_factor_gets_sms_path_to_enrollment(client, account, twilio):
    twilio.clear()
    r = login_password(client, account)
    body = r.get_json()
    assert body["methods"] == ["sms"]
    sms = twilio.wait_for(lambda m: m["to"] == account["phone"])
    m = mfa(client, body["mfa_token"], "sms", code=extract_code(sms["body"]))
    assert m.status_code == 200
    grant = m.get_json()
    assert set(grant) == {"enrollment_token", "expires_in"}
    factor = enroll_totp(client, grant["enrollment_token"])
    assert len(factor["recovery_codes"]) == 10


def test_sms_path_wrong_code_counts(client, account, twilio):
    body = login_password(client, account).get_json()
    sms = twilio.wait_for(lambda m: m["to"] == account["phone"] and "sign-in" in m["body"])
    wrong = f"{(int(extract_code(sms['body'])) + 1) % 1000000:06d}"
    for _ in range(5):
        assert mfa(client, body["mfa_token"], "sms", code=wrong).status_code == 401
    assert mfa(client, body["mfa_token"], "sms", code=extract_code(sms["body"])).status_code == 401


# ---------------------------------------------------------------------------- frozen accounts
def test_frozen_account_learns_only_after_both_factors(client, key_account, db):
    db.execute("UPDATE accounts SET status = 'frozen'")
    wrong = client.post("/v1/login", json={"email": key_account["email"], "password": "wrong password!!"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_credentials"
    body = login_password(client, key_account).get_json()
    assertion = key_account["authenticator"].get(body["webauthn_options"])
    r = mfa(client, body["mfa_token"], "webauthn", credential=assertion)
    assert r.status_code == 403 and r.get_json()["code"] == "account_frozen"
    assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


# ---------------------------------------------------------------------------- tokens and sessions
def test_refresh_rotates_and_reuse_revokes_the_session(client, key_account):
    tokens = webauthn_login(client, key_account)
    r1 = client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r1.status_code == 200
    rotated = r1.get_json()
    assert rotated["refresh_token"] != tokens["refresh_token"] and rotated["session_id"] == tokens["session_id"]
    assert rotated["acr"] == "aal3"
    assert client.get("/v1/account", headers=bearer(rotated["access_token"])).status_code == 200
    reuse = client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reuse.status_code == 401 and reuse.get_json()["code"] == "invalid_token"
    # the whole session is dead: its newest tokens too
    assert client.get("/v1/account", headers=bearer(rotated["access_token"])).status_code == 401
    assert client.post("/v1/token/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401


def test_logout_kills_session_and_refresh_token(client, key_account):
    tokens = webauthn_login(client, key_account)
    assert client.post("/v1/logout", headers=bearer(tokens["access_token"])).status_code == 204
    after = client.get("/v1/account", headers=bearer(tokens["access_token"]))
    assert after.status_code == 401 and "invalid_token" in after.headers["WWW-Authenticate"]
    assert client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_sessions_list_and_revoke(client, key_account):
    phone = webauthn_login(client, key_account, **{"User-Agent": "Mozilla/5.0 (iPhone)", "X-Device-Id": "dev-1"})
    laptop = webauthn_login(client, key_account, **{"User-Agent": "Mozilla/5.0 (Macintosh)"})
    third = webauthn_login(client, key_account)
    listed = client.get("/v1/sessions", headers=bearer(laptop["access_token"])).get_json()
    assert len(listed) == 3
    current = [s for s in listed if s["current"]]
    assert len(current) == 1 and current[0]["session_id"] == laptop["session_id"]
    assert {s["device_name"] for s in listed} >= {"iPhone", "Mac"}
    r = client.delete(f"/v1/sessions/{phone['session_id']}", headers=bearer(laptop["access_token"]))
    assert r.status_code == 204
    assert client.get("/v1/account", headers=bearer(phone["access_token"])).status_code == 401
    assert client.delete(f"/v1/sessions/{phone['session_id']}", headers=bearer(laptop["access_token"])).status_code == 404
    assert client.delete("/v1/sessions", headers=bearer(laptop["access_token"])).status_code == 204
    assert client.get("/v1/account", headers=bearer(third["access_token"])).status_code == 401
    assert client.get("/v1/account", headers=bearer(laptop["access_token"])).status_code == 200


def test_session_of_another_account_cannot_be_revoked(client, twilio, smtp, key_account):
    mine = webauthn_login(client, key_account)
    other = register(client, twilio, smtp)
    other_key = SoftAuthenticator()
    enroll_webauthn(client, other["enrollment_token"], other_key)
    theirs = webauthn_login(client, {**other, "authenticator": other_key})
    r = client.delete(f"/v1/sessions/{theirs['session_id']}", headers=bearer(mine["access_token"]))
    assert r.status_code == 404
    assert client.get("/v1/account", headers=bearer(theirs["access_token"])).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer a.b.c"],
)
def test_bad_bearer_tokens_get_401(client, header):
    r = client.get("/v1/account", headers={"Authorization": header} if header else {})
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/problem+json"


def test_forged_token_signed_with_another_key_is_refused(client, key_account):
    from cryptography.hazmat.primitives.asymmetric import ec

    tokens = webauthn_login(client, key_account)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid})
    assert client.get("/v1/account", headers=bearer(forged)).status_code == 401
    none_alg = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid}).encode()).rstrip(b"=").decode()
        + "."
        + tokens["access_token"].split(".")[1]
        + "."
    )
    assert client.get("/v1/account", headers=bearer(none_alg)).status_code == 401


# ---------------------------------------------------------------------------- password hash upgrade
def test_password_hash_is_upgraded_on_login(make_app, settings, key_account, db):
    before = db.execute("SELECT password_hash FROM accounts").fetchone()[0]
    stronger = make_app(settings.replace(argon2_time_cost=3)).test_client()
    assert login_password(stronger, key_account).status_code == 200
    after = db.execute("SELECT password_hash FROM accounts").fetchone()[0]
    assert after != before and "t=3" in after and "t=2" in before
