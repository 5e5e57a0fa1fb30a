"""Passkey sign-in: discoverable credentials with user verification, one step, no password."""

from __future__ import annotations

import pytest

from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_totp, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator, b64url
from tests.test_step_up import step_up


def enroll_passkey(client, token: str, key: SoftAuthenticator, **headers) -> dict:
    r = client.post("/v1/factors/webauthn/options", json={"passkey": True}, headers={**bearer(token), **headers})
    assert r.status_code == 200, r.get_json()
    options = r.get_json()["options"]
    c = client.post("/v1/factors/webauthn", json={"credential": key.create(options)}, headers=bearer(token))
    assert c.status_code == 201, c.get_json()
    return {**c.get_json(), "options": options}


def passkey_options(client) -> dict:
    r = client.post("/v1/login/passkey/options", json={})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def passkey_sign_in(client, key: SoftAuthenticator, *, options=None, credential=None, **headers):
    ch = options or passkey_options(client)
    credential = credential or key.get(ch["webauthn_options"])
    return client.post(
        "/v1/login/passkey", json={"challenge_id": ch["challenge_id"], "credential": credential}, headers=headers
    )


@pytest.fixture
def owner(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enrolled = enroll_passkey(client, account["enrollment_token"], key)
    return {**account, "key": key, "recovery_codes": enrolled["recovery_codes"], "factor_id": enrolled["factor_id"]}


def test_enrolment_asks_for_a_discoverable_credential_with_user_verification(client, owner):
    r = passkey_sign_in(client, owner["key"])
    assert r.status_code == 200, r.get_json()
    factors = client.get("/v1/factors", headers=bearer(r.get_json()["access_token"])).get_json()
    assert [(f["type"], f["passkey"]) for f in factors] == [("webauthn", True)]


def test_passkey_options_require_a_resident_key(client, twilio, smtp):
    account = register(client, twilio, smtp)
    r = client.post("/v1/factors/webauthn/options", json={"passkey": True}, headers=bearer(account["enrollment_token"]))
    selection = r.get_json()["options"]["authenticatorSelection"]
    assert selection["residentKey"] == "required"
    assert selection["requireResidentKey"] is True
    assert selection["userVerification"] == "required"
    plain = client.post("/v1/factors/webauthn/options", json={}, headers=bearer(account["enrollment_token"]))
    assert plain.get_json()["options"]["authenticatorSelection"]["residentKey"] == "preferred"


def test_sign_in_options_name_no_credential_and_require_user_verification(client):
    ch = passkey_options(client)
    assert ch["expires_in"] == 300
    assert ch["webauthn_options"].get("allowCredentials", []) == []
    assert ch["webauthn_options"]["userVerification"] == "required"


def test_a_passkey_signs_in_alone_as_two_factors(client, owner):
    r = passkey_sign_in(client, owner["key"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["acr"] == "aal2"
    assert body["amr"] == ["hwk", "user", "mfa"]
    assert body["token_type"] == "Bearer" and body["refresh_token"] and body["session_id"]
    me = client.get("/v1/account", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.get_json()["account_id"] == owner["account_id"]


def _rejected(r) -> None:
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["code"] == "invalid_factor"


def test_unknown_credential_bad_signature_and_foreign_handle_answer_alike(client, twilio, smtp, owner):
    stranger = SoftAuthenticator()  # never registered
    stranger.user_handle = owner["key"].user_handle
    _rejected(passkey_sign_in(client, stranger))

    owner["key"].tamper_signature = True
    _rejected(passkey_sign_in(client, owner["key"]))
    owner["key"].tamper_signature = False

    # B's passkey presented with A's user handle (W3C WebAuthn 7.2): refused.
    other = register(client, twilio, smtp)
    other_key = SoftAuthenticator()
    enroll_passkey(client, other["enrollment_token"], other_key)
    other_key.user_handle = owner["key"].user_handle
    _rejected(passkey_sign_in(client, other_key))

    # No user handle at all: a passkey sign-in cannot name its account.
    owner["key"].user_handle, handle = None, owner["key"].user_handle
    _rejected(passkey_sign_in(client, owner["key"]))
    owner["key"].user_handle = handle
    assert passkey_sign_in(client, owner["key"]).status_code == 200


def test_user_verification_is_required(client, owner):
    owner["key"].user_verified = False
    _rejected(passkey_sign_in(client, owner["key"]))


def test_a_security_key_that_is_not_a_passkey_cannot_sign_in_alone(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    r = client.post("/v1/factors/webauthn/options", json={}, headers=bearer(account["enrollment_token"]))
    c = client.post("/v1/factors/webauthn", json={"credential": key.create(r.get_json()["options"])},
                    headers=bearer(account["enrollment_token"]))
    assert c.status_code == 201
    _rejected(passkey_sign_in(client, key))


def test_a_challenge_answers_once_and_only_for_itself(client, owner):
    first, second = passkey_options(client), passkey_options(client)
    made_for_first = owner["key"].get(first["webauthn_options"])
    # An assertion over the first challenge cannot answer the second one.
    _rejected(passkey_sign_in(client, owner["key"], options=second, credential=made_for_first))
    assert passkey_sign_in(client, owner["key"], options=first, credential=made_for_first).status_code == 200
    again = owner["key"].get(first["webauthn_options"])
    _rejected(passkey_sign_in(client, owner["key"], options=first, credential=again))
    # The second challenge was used up by the failed attempt.
    _rejected(passkey_sign_in(client, owner["key"], options=second))


def test_concurrent_answers_to_one_challenge_succeed_once(app, owner):
    client = app.test_client()
    ch = passkey_options(client)
    credential = owner["key"].get(ch["webauthn_options"])
    body = {"challenge_id": ch["challenge_id"], "credential": credential}
    statuses = race([lambda: app.test_client().post("/v1/login/passkey", json=body).status_code] * 6)
    assert sorted(statuses) == [200] + [401] * 5


def test_an_expired_challenge_is_refused(client, db, owner):
    ch = passkey_options(client)
    db.execute("UPDATE passkey_challenges SET expires_at = now() - interval '1 second' WHERE id = %s",
               (ch["challenge_id"],))
    _rejected(passkey_sign_in(client, owner["key"], options=ch))


def test_malformed_requests_are_400(client):
    assert client.post("/v1/login/passkey/options", json={"x": 1}).status_code == 400
    r = client.post("/v1/login/passkey", json={"challenge_id": "x"})
    assert r.status_code == 400
    assert client.post("/v1/login/passkey", json={"challenge_id": "nope", "credential": {}}).status_code == 401


def test_a_frozen_account_learns_it_only_after_a_valid_assertion(client, app, owner):
    app.extensions["authsvc"].admin.freeze(owner["account_id"], operator="test", reason="suspected takeover")
    owner["key"].tamper_signature = True
    _rejected(passkey_sign_in(client, owner["key"]))
    owner["key"].tamper_signature = False
    r = passkey_sign_in(client, owner["key"])
    assert r.status_code == 403 and r.get_json()["code"] == "account_frozen"


def test_a_forced_password_change_holds_for_passkeys(client, app, owner):
    app.extensions["authsvc"].admin.require_password_change(owner["account_id"], operator="test", reason="breach")
    r = passkey_sign_in(client, owner["key"])
    assert r.status_code == 403
    assert r.get_json()["code"] == "password_change_required"
    assert r.get_json()["password_change_token"]


def _session(client, owner) -> dict:
    r = passkey_sign_in(client, owner["key"])
    assert r.status_code == 200, r.get_json()
    return {**owner, "tokens": r.get_json()}


def test_password_login_off_needs_step_up_a_passkey_and_recovery_codes(client, twilio, smtp, owner):
    user = _session(client, owner)
    auth = bearer(user["tokens"]["access_token"])
    r = client.patch("/v1/account", json={"password_login": False}, headers=auth)
    assert r.status_code == 401 and r.get_json()["code"] == "step_up_required"

    wrong_action = step_up(client, user, action="factor.add", transaction=None)
    r = client.patch("/v1/account", json={"password_login": False},
                     headers={**auth, "X-Step-Up-Token": wrong_action["step_up_token"]})
    assert r.status_code == 401

    # An account with only a TOTP factor has no passkey to fall back on.
    plain = register(client, twilio, smtp)
    enrolled = enroll_totp(client, plain["enrollment_token"])
    body = login_password(client, plain).get_json()
    m = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "recovery_code",
                                           "code": enrolled["recovery_codes"][0]})
    plain_auth = bearer(m.get_json()["access_token"])
    ch = client.post("/v1/step-up", json={"action": "factor.remove"}, headers=plain_auth).get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify", json={"method": "recovery_code",
                    "code": enrolled["recovery_codes"][1]}, headers=plain_auth)
    assert v.status_code == 200, v.get_json()
    r = client.patch("/v1/account", json={"password_login": False},
                     headers={**plain_auth, "X-Step-Up-Token": v.get_json()["step_up_token"]})
    assert r.status_code == 409 and r.get_json()["code"] == "passkey_required"
    assert login_password(client, plain).status_code == 200


def test_with_password_login_off_a_leaked_password_is_useless(client, db, owner):
    user = _session(client, owner)
    auth = bearer(user["tokens"]["access_token"])
    ok = step_up(client, user, action="factor.remove", transaction=None)
    r = client.patch("/v1/account", json={"password_login": False},
                     headers={**auth, "X-Step-Up-Token": ok["step_up_token"]})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["password_login"] is False

    refused = login_password(client, owner)
    assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_credentials"
    wrong = client.post("/v1/login", json={"email": owner["email"], "password": "not the password at all"})
    assert wrong.get_json() == refused.get_json()
    assert passkey_sign_in(client, owner["key"]).status_code == 200

    # The last passkey cannot go while password sign-in is off, even with another factor left.
    add = step_up(client, user, action="factor.add", transaction=None)
    t = client.post("/v1/factors/totp", json={}, headers={**auth, "X-Step-Up-Token": add["step_up_token"]})
    assert t.status_code == 201, t.get_json()
    import pyotp

    confirm = client.post(f"/v1/factors/totp/{t.get_json()['factor_id']}/confirm",
                          json={"code": pyotp.TOTP(t.get_json()["secret"]).now()}, headers=auth)
    assert confirm.status_code == 200, confirm.get_json()
    again = step_up(client, user, action="factor.remove", transaction=None)
    r = client.delete(f"/v1/factors/{owner['factor_id']}",
                      headers={**auth, "X-Step-Up-Token": again["step_up_token"]})
    assert r.status_code == 409 and r.get_json()["code"] == "passkey_required"
    assert db.execute("SELECT password_login FROM accounts WHERE id = %s", (owner["account_id"],)).fetchone()[0] is False


def test_the_webauthn_user_handle_travels_with_the_credential(owner):
    # The soft authenticator keeps the user handle the server chose at enrolment, as a
    # platform authenticator does for a discoverable credential.
    assert owner["key"].user_handle and b64url(owner["key"].user_handle)


def test_a_lock_caused_with_the_password_never_keeps_the_owners_passkey_out(client, owner, twilio, smtp):
    """Someone with only the password answers the second factor wrongly from unknown devices
    until the account's lock holds for unknown devices; the owner's passkey (two factors in
    itself) still signs in, from a device the service has never seen, and the owner hears of
    the new device as always."""
    for _ in range(2):
        first = login_password(client, owner)
        assert first.status_code == 200, first.get_json()
        for _ in range(5):
            assert client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"],
                                                      "method": "recovery_code",
                                                      "code": "aaaa-bbbb-cccc-dddd"}).status_code == 401
    assert login_password(client, owner).status_code == 429  # the lock holds for unknown devices
    r = passkey_sign_in(client, owner["key"], **{"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["device_token"] != owner["device_token"]  # a new device
    smtp.wait_for(lambda m: m["to"] == owner["email"] and m["subject"] == "New sign-in to your account")
    assert login_password(client, owner).status_code == 429  # still locked for the password path


def test_reset_factors_on_a_passkey_only_account_leaves_a_way_in(client, app, db, owner, twilio):
    """Password sign-in off, then the passkey is lost: the operator's reset-factors turns the
    password back on, so the owner signs in with it and the SMS code to the verified phone,
    and enrols a new factor."""
    from tests.support.messages import extract_code

    user = _session(client, owner)
    ok = step_up(client, user, action="factor.remove", transaction=None)
    r = client.patch("/v1/account", json={"password_login": False},
                     headers={**bearer(user["tokens"]["access_token"]), "X-Step-Up-Token": ok["step_up_token"]})
    assert r.status_code == 200 and r.get_json()["password_login"] is False
    app.extensions["authsvc"].admin.reset_factors(owner["email"], operator="alice", reason="lost the phone, ID checked")
    detail = db.execute("SELECT detail FROM audit_log WHERE action = 'factors.reset'").fetchone()[0]
    assert detail["password_login_restored"] is True
    twilio.clear()
    first = login_password(client, owner)
    assert first.status_code == 200 and first.get_json()["methods"] == ["sms"], first.get_json()
    code = extract_code(twilio.wait_for(lambda m: m["to"] == owner["phone"] and "sign-in code" in m["body"])["body"])
    enrol = client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"], "method": "sms", "code": code})
    assert enrol.status_code == 200 and enrol.get_json()["enrollment_token"], enrol.get_json()
