"""Step-up bound to session, action and transaction; factor management under step-up;
introspection and redemption by payment backends with client credentials."""

from __future__ import annotations

import base64

import pytest

from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_totp, enroll_webauthn, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator, b64url_decode

PAYMENT = {"amount": "1200.50", "currency": "JPY", "payee": "merchant-42"}


@pytest.fixture
def user(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enrolled = enroll_webauthn(client, account["enrollment_token"], key)
    body = login_password(client, account).get_json()
    m = client.post(
        "/v1/login/mfa",
        json={"mfa_token": body["mfa_token"], "method": "webauthn", "credential": key.get(body["webauthn_options"])},
    )
    assert m.status_code == 200
    return {**account, "key": key, "tokens": m.get_json(), "recovery_codes": enrolled["recovery_codes"]}


@pytest.fixture
def backend(app):
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def step_up(client, user, action="payment.authorize", transaction=PAYMENT) -> dict:
    auth = bearer(user["tokens"]["access_token"])
    body = {"action": action}
    if transaction is not None:
        body["transaction"] = transaction
    r = client.post("/v1/step-up", json=body, headers=auth)
    assert r.status_code == 201, r.get_json()
    ch = r.get_json()
    v = client.post(
        f"/v1/step-up/{ch['challenge_id']}/verify",
        json={"method": "webauthn", "credential": user["key"].get(ch["webauthn_options"])},
        headers=auth,
    )
    assert v.status_code == 200, v.get_json()
    return {**v.get_json(), "challenge": ch}


def redeem(client, backend, token, action="payment.authorize", transaction=PAYMENT):
    body = {"step_up_token": token, "action": action}
    if transaction is not None:
        body["transaction"] = transaction
    return client.post("/v1/step-up/redeem", json=body, headers=backend)


def test_payment_step_up_redeems_once_for_exactly_that_payment(client, user, backend):
    done = step_up(client, user)
    assert done["acr"] == "aal3" and done["amr"] == ["hwk", "mfa"]
    r = redeem(client, backend, done["step_up_token"], transaction={**PAYMENT, "amount": "1200.5"})
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["account_id"] == user["account_id"] and out["session_id"] == user["tokens"]["session_id"]
    assert out["action"] == "payment.authorize" and out["transaction"] == {**PAYMENT, "amount": "1200.5"}
    again = redeem(client, backend, done["step_up_token"])
    assert again.status_code == 409 and again.get_json()["code"] == "already_redeemed"


@pytest.mark.parametrize(
    "action, transaction",
    [
        ("payment.authorize", {**PAYMENT, "amount": "1200.51"}),
        ("payment.authorize", {**PAYMENT, "currency": "USD"}),
        ("payment.authorize", {**PAYMENT, "payee": "attacker"}),
        ("payment.authorize", {**PAYMENT, "amount": PAYMENT["amount"] + "\n"}),
        ("factor.add", None),
    ],
)
def test_redeeming_for_anything_else_is_a_mismatch(client, user, backend, action, transaction):
    done = step_up(client, user)
    r = redeem(client, backend, done["step_up_token"], action=action, transaction=transaction)
    assert r.status_code == 409 and r.get_json()["code"] == "transaction_mismatch"
    # a mismatch does not burn the token for the real payment
    assert redeem(client, backend, done["step_up_token"]).status_code == 200


def test_webauthn_challenge_is_derived_from_the_transaction(client, user):
    auth = bearer(user["tokens"]["access_token"])
    a = client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": PAYMENT}, headers=auth).get_json()
    b = client.post(
        "/v1/step-up", json={"action": "payment.authorize", "transaction": {**PAYMENT, "amount": "9999"}}, headers=auth
    ).get_json()
    ca, cb = (b64url_decode(x["webauthn_options"]["challenge"]) for x in (a, b))
    assert ca != cb and len(ca) == 32
    # an assertion made for challenge A does not verify challenge B
    assertion = user["key"].get(a["webauthn_options"])
    r = client.post(f"/v1/step-up/{b['challenge_id']}/verify", json={"method": "webauthn", "credential": assertion},
                    headers=auth)
    assert r.status_code == 401


def test_redeem_needs_client_credentials_and_a_real_token(client, user, backend):
    done = step_up(client, user)
    assert redeem(client, {}, done["step_up_token"]).status_code == 401
    bad = {"Authorization": "Basic " + base64.b64encode(b"cl_x:wrong").decode()}
    assert redeem(client, bad, done["step_up_token"]).status_code == 401
    r = redeem(client, backend, "x" * 43)
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_token"


def test_expired_step_up_token_is_invalid(client, user, backend, db):
    done = step_up(client, user)
    db.execute("UPDATE step_up_tokens SET expires_at = now() - interval '1 second'")
    assert redeem(client, backend, done["step_up_token"]).get_json()["code"] == "invalid_token"


def test_step_up_token_of_a_revoked_session_is_invalid(client, user, backend):
    done = step_up(client, user)
    assert client.post("/v1/logout", headers=bearer(user["tokens"]["access_token"])).status_code == 204
    assert redeem(client, backend, done["step_up_token"]).status_code == 401


def test_concurrent_redemption_succeeds_once(app, user, backend):
    done = step_up(app.test_client(), user)
    statuses = race([lambda: redeem(app.test_client(), backend, done["step_up_token"]).status_code] * 6)
    assert sorted(statuses) == [200] + [409] * 5


@pytest.mark.parametrize(
    "body, field",
    [
        ({"action": "payment.authorize"}, "transaction"),
        ({"action": "withdrawal"}, "action"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "amount": "-1"}}, "transaction.amount"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "amount": "1e3"}}, "transaction.amount"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "amount": 1200}}, "transaction.amount"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "currency": "jpy"}}, "transaction.currency"),
        # "$" would also match before a final newline
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "amount": "1000\n"}}, "transaction.amount"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "currency": "JPY\n"}}, "transaction.currency"),
        ({"action": "payment.authorize", "transaction": {**PAYMENT, "extra": "x"}}, "transaction.extra"),
    ],
)
def test_step_up_requests_are_validated(client, user, body, field):
    r = client.post("/v1/step-up", json=body, headers=bearer(user["tokens"]["access_token"]))
    assert r.status_code == 400 and field in [e["field"] for e in r.get_json()["errors"]]


def test_operator_listed_actions_are_accepted(make_app, settings, twilio, smtp):
    app = make_app(settings.replace(step_up_actions=settings.step_up_actions + ("withdrawal",)))
    client = app.test_client()
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    import time

    body = login_password(client, account).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "totp",
                                                 "code": factor["totp"].at(time.time() + 30)}).get_json()
    r = client.post("/v1/step-up", json={"action": "withdrawal"}, headers=bearer(tokens["access_token"]))
    assert r.status_code == 201 and r.get_json()["methods"] == ["totp", "recovery_code"]


def test_step_up_challenge_dies_after_five_wrong_answers_and_belongs_to_its_session(client, user):
    auth = bearer(user["tokens"]["access_token"])
    ch = client.post("/v1/step-up", json={"action": "factor.add"}, headers=auth).get_json()
    for _ in range(5):
        r = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                        json={"method": "recovery_code", "code": "aaaa-aaaa-aaaa-aaaa"}, headers=auth)
        assert r.status_code == 401
    r = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": user["key"].get(ch["webauthn_options"])}, headers=auth)
    assert r.status_code == 401


# ---------------------------------------------------------------------------- factors under step-up
def test_adding_a_factor_with_a_session_needs_step_up(client, user):
    auth = bearer(user["tokens"]["access_token"])
    r = client.post("/v1/factors/totp", json={}, headers=auth)
    assert r.status_code == 401 and r.get_json()["code"] == "step_up_required"
    assert 'error="insufficient_user_authentication"' in r.headers["WWW-Authenticate"]
    payment = step_up(client, user)  # a token for another action does not do
    r = client.post("/v1/factors/totp", json={}, headers={**auth, "X-Step-Up-Token": payment["step_up_token"]})
    assert r.status_code == 401
    done = step_up(client, user, action="factor.add", transaction=None)
    r = client.post("/v1/factors/totp", json={}, headers={**auth, "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 201
    import pyotp

    begun = r.get_json()
    c = client.post(f"/v1/factors/totp/{begun['factor_id']}/confirm",
                    json={"code": pyotp.TOTP(begun["secret"]).now()}, headers=auth)
    assert c.status_code == 200 and "recovery_codes" not in c.get_json()  # not the first factor
    # the step-up token worked once
    r = client.post("/v1/factors/totp", json={}, headers={**auth, "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 401
    assert len(client.get("/v1/factors", headers=auth).get_json()) == 2


def test_step_up_token_is_bound_to_its_session(client, user):
    done = step_up(client, user, action="factor.add", transaction=None)
    body = login_password(client, user).get_json()
    other = client.post(
        "/v1/login/mfa",
        json={"mfa_token": body["mfa_token"], "method": "webauthn",
              "credential": user["key"].get(body["webauthn_options"])},
    ).get_json()
    r = client.post("/v1/factors/totp", json={},
                    headers={**bearer(other["access_token"]), "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 401 and r.get_json()["code"] == "step_up_required"


def test_last_factor_cannot_be_removed_and_removal_notifies(client, user, twilio, smtp):
    auth = bearer(user["tokens"]["access_token"])
    factor_id = client.get("/v1/factors", headers=auth).get_json()[0]["factor_id"]
    done = step_up(client, user, action="factor.remove", transaction=None)
    r = client.delete(f"/v1/factors/{factor_id}", headers={**auth, "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 409 and r.get_json()["code"] == "last_factor"
    # the failed removal kept the step-up token: add a second key, then remove the first
    add = step_up(client, user, action="factor.add", transaction=None)
    enroll_webauthn(client, user["tokens"]["access_token"], SoftAuthenticator(),
                    headers={"X-Step-Up-Token": add["step_up_token"]})
    twilio.clear()
    smtp.clear()
    r = client.delete(f"/v1/factors/{factor_id}", headers={**auth, "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 204
    twilio.wait_for(lambda m: m["to"] == user["phone"] and "removed" in m["body"])
    smtp.wait_for(lambda m: m["to"] == user["email"] and "removed" in m["body"])


def test_recovery_codes_regenerate_under_step_up_and_old_ones_die(client, user):
    auth = bearer(user["tokens"]["access_token"])
    assert client.post("/v1/factors/recovery-codes", json={}, headers=auth).status_code == 401
    done = step_up(client, user, action="factor.recovery_codes", transaction=None)
    r = client.post("/v1/factors/recovery-codes", json={}, headers={**auth, "X-Step-Up-Token": done["step_up_token"]})
    assert r.status_code == 200
    new_codes = r.get_json()["recovery_codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(user["recovery_codes"])
    old = login_password(client, user).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": old, "method": "recovery_code", "code": user["recovery_codes"][0]})
    assert r.status_code == 401
    fresh = login_password(client, user).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": fresh, "method": "recovery_code", "code": new_codes[0]})
    assert r.status_code == 200


def test_enrollment_token_cannot_act_as_a_session(client, twilio, smtp):
    account = register(client, twilio, smtp)
    token = account["enrollment_token"]
    for method, path in (("get", "/v1/account"), ("get", "/v1/sessions"), ("get", "/v1/factors")):
        assert getattr(client, method)(path, headers=bearer(token)).status_code == 401
    assert client.post("/v1/step-up", json={"action": "factor.add"}, headers=bearer(token)).status_code == 401


# ---------------------------------------------------------------------------- introspection
def test_introspection(client, user, backend):
    token = user["tokens"]["access_token"]
    assert client.post("/v1/introspect", json={"token": token}).status_code == 401
    r = client.post("/v1/introspect", json={"token": token}, headers=backend)
    info = r.get_json()
    assert r.status_code == 200 and info["active"] is True
    assert info["sub"] == user["account_id"] and info["sid"] == user["tokens"]["session_id"]
    assert info["acr"] == "aal3" and info["amr"] == ["pwd", "hwk", "mfa"]
    assert {"auth_time", "iat", "exp"} <= set(info)
    assert client.post("/v1/introspect", json={"token": "garbage"}, headers=backend).get_json() == {"active": False}
    client.post("/v1/logout", headers=bearer(token))
    assert client.post("/v1/introspect", json={"token": token}, headers=backend).get_json() == {"active": False}


def test_revoked_client_is_refused(app, client, user, backend):
    client_id = base64.b64decode(backend["Authorization"].split()[1]).decode().split(":")[0]
    assert app.extensions["authsvc"].clients.revoke(client_id, operator="test", reason="test")
    r = client.post("/v1/introspect", json={"token": user["tokens"]["access_token"]}, headers=backend)
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_client"
