"""Secure Payment Confirmation: payment credentials (WebAuthn ``payment`` extension), the
``spc`` offer of a payment step-up, and the server-side check of ``payment.get`` assertions
(a software authenticator playing the browser): the payee, total and instrument shown must be
exactly the transaction bound to the challenge, then the same exactly-once redemption."""

from __future__ import annotations

import base64

import pytest

from authsvc.services.factors.spc import DEFAULT_ICON
from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_webauthn, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator, b64url, b64url_decode

PAYMENT = {"amount": "1200.50", "currency": "JPY", "payee": "merchant-42"}


def enroll_payment_credential(client, token, key, **headers) -> dict:
    h = {**bearer(token), **headers}
    r = client.post("/v1/factors/webauthn/options", json={"payment": True}, headers=h)
    assert r.status_code == 200, r.get_json()
    options = r.get_json()["options"]
    c = client.post("/v1/factors/webauthn", json={"credential": key.create(options), "name": "pay"},
                    headers=bearer(token))
    assert c.status_code == 201, c.get_json()
    return options


@pytest.fixture
def user(client, twilio, smtp):
    """An account whose first factor is a payment credential, plus a plain security key."""
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    options = enroll_payment_credential(client, account["enrollment_token"], key)
    body = login_password(client, account).get_json()
    m = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": key.get(body["webauthn_options"])})
    assert m.status_code == 200
    tokens = m.get_json()
    auth = bearer(tokens["access_token"])
    plain = SoftAuthenticator()
    add = step_up_with(client, auth, key, action="factor.add")
    enroll_webauthn(client, tokens["access_token"], plain, headers={"X-Step-Up-Token": add})
    return {**account, "key": key, "plain": plain, "auth": auth, "options": options}


@pytest.fixture
def backend(app):
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def step_up_with(client, auth, key, action) -> str:
    ch = client.post("/v1/step-up", json={"action": action}, headers=auth).get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": key.get(ch["webauthn_options"])}, headers=auth)
    assert v.status_code == 200, v.get_json()
    return v.get_json()["step_up_token"]


def payment_challenge(client, user, transaction=PAYMENT) -> dict:
    r = client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": transaction},
                    headers=user["auth"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def answer(client, user, ch, credential, method="spc"):
    return client.post(f"/v1/step-up/{ch['challenge_id']}/verify", json={"method": method, "credential": credential},
                       headers=user["auth"])


def test_payment_credentials_are_enrolled_with_the_payment_extension(client, user):
    options = user["options"]
    assert options["extensions"] == {"payment": {"isPayment": True}}
    selection = options["authenticatorSelection"]
    assert selection["authenticatorAttachment"] == "platform"
    assert selection["residentKey"] == "required" and selection["userVerification"] == "required"
    factors = client.get("/v1/factors", headers=user["auth"]).get_json()
    assert sorted(f["payment"] for f in factors) == [False, True]
    plain = client.post("/v1/factors/webauthn/options", json={}, headers={**user["auth"], "X-Step-Up-Token": step_up_with(
        client, user["auth"], user["key"], "factor.add")}).get_json()["options"]
    assert "extensions" not in plain and "authenticatorAttachment" not in plain["authenticatorSelection"]


def test_payment_step_up_offers_what_payment_request_needs(client, user):
    ch = payment_challenge(client, user)
    assert ch["methods"][0] == "spc" and "webauthn" in ch["methods"]
    spc = ch["spc"]
    assert spc["credentialIds"] == [b64url(user["key"].credential_id)]  # only the payment credential
    assert spc["challenge"] == ch["webauthn_options"]["challenge"] and len(b64url_decode(spc["challenge"])) == 32
    assert spc["rpId"] == "localhost" and spc["payeeName"] == "merchant-42"
    assert spc["total"] == {"currency": "JPY", "value": "1200.5"}
    assert spc["instrument"] == {"displayName": "authsvc", "icon": DEFAULT_ICON}
    assert spc["timeout"] == 300_000
    # other actions, and accounts without a payment credential, get no spc
    other = client.post("/v1/step-up", json={"action": "factor.add"}, headers=user["auth"]).get_json()
    assert "spc" not in other and "spc" not in other["methods"]


def test_account_without_payment_credential_gets_no_spc(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    body = login_password(client, account).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                                "credential": key.get(body["webauthn_options"])}).get_json()
    ch = client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": PAYMENT},
                     headers=bearer(tokens["access_token"])).get_json()
    assert "spc" not in ch and ch["methods"] == ["webauthn", "recovery_code"]


def test_spc_assertion_verifies_and_redeems_once(client, user, backend, db):
    ch = payment_challenge(client, user)
    v = answer(client, user, ch, user["key"].pay(ch["spc"]))
    assert v.status_code == 200, v.get_json()
    done = v.get_json()
    assert done["acr"] == "aal3" and done["amr"] == ["hwk", "mfa"]
    body = {"step_up_token": done["step_up_token"], "action": "payment.authorize", "transaction": PAYMENT}
    r = client.post("/v1/step-up/redeem", json=body, headers=backend)
    assert r.status_code == 200 and r.get_json()["exemption"] is None
    assert client.post("/v1/step-up/redeem", json=body, headers=backend).get_json()["code"] == "already_redeemed"
    moved = client.post("/v1/step-up/redeem", json={**body, "transaction": {**PAYMENT, "amount": "1200.51"}},
                        headers=backend)
    assert moved.status_code == 409


@pytest.mark.parametrize(
    "forge",
    [
        {"total": {"currency": "JPY", "value": "1200.51"}},
        {"total": {"currency": "JPY", "value": "12005"}},
        {"total": {"currency": "USD", "value": "1200.5"}},
        {"total": {"currency": "JPY", "value": "1200.5", "label": "x"}},
        {"total": {"currency": "JPY", "value": "-1200.5"}},
        {"payeeName": "attacker"},
        {"payeeName": "merchant-42", "payeeOrigin": "https://attacker.example"},
        {"rpId": "attacker.example"},
        {"top_origin": "https://attacker.example"},
        {"instrument": {"displayName": "Other card", "icon": DEFAULT_ICON}},
        {"instrument": {"displayName": "authsvc", "icon": "https://attacker.example/card.png"}},
        {"drop": ["total"]},
        {"drop": ["payeeName"]},
        {"drop": ["instrument"]},
        {"type_": "webauthn.get"},
        {"type_": "payment.create"},
    ],
    ids=lambda f: "-".join(f"{k}" for k in f),
)
def test_anything_other_than_the_bound_payment_is_refused(client, user, forge):
    ch = payment_challenge(client, user)
    forged = user["key"].pay(ch["spc"], **forge)
    r = answer(client, user, ch, forged)
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_factor"
    # a wrong answer like any other: the challenge still takes the genuine confirmation
    assert answer(client, user, ch, user["key"].pay(ch["spc"])).status_code == 200


def test_the_amount_changed_before_the_challenge_is_refused(client, user):
    """An SPC assertion for one payment does not answer another payment's challenge."""
    a = payment_challenge(client, user)
    b = payment_challenge(client, user, {**PAYMENT, "amount": "99999"})
    signed_for_a = user["key"].pay(a["spc"])
    assert answer(client, user, b, signed_for_a).status_code == 401
    # nor does a's assertion with b's challenge but a's amount
    mixed = user["key"].pay({**b["spc"], "total": a["spc"]["total"]})
    assert answer(client, user, b, mixed).status_code == 401


def test_only_payment_credentials_answer_spc_and_types_do_not_mix(client, user):
    ch = payment_challenge(client, user)
    # a plain key producing payment.get client data: not a payment credential
    spc_for_plain = {**ch["spc"], "credentialIds": [b64url(user["plain"].credential_id)]}
    assert answer(client, user, ch, user["plain"].pay(spc_for_plain)).status_code == 401
    # a payment.get assertion is not a WebAuthn answer (py_webauthn wants webauthn.get) ...
    assert answer(client, user, ch, user["key"].pay(ch["spc"]), method="webauthn").status_code == 401
    # ... and a webauthn.get assertion is not an SPC answer
    assert answer(client, user, ch, user["key"].get(ch["webauthn_options"])).status_code == 401
    # a forged signature
    user["key"].tamper_signature = True
    assert answer(client, user, ch, user["key"].pay(ch["spc"])).status_code == 401
    user["key"].tamper_signature = False
    # user verification is required
    user["key"].user_verified = False
    assert answer(client, user, ch, user["key"].pay(ch["spc"])).status_code == 401
    user["key"].user_verified = True
    # five wrong answers killed that challenge; a new one takes the genuine confirmation
    assert answer(client, user, ch, user["key"].pay(ch["spc"])).status_code == 401
    fresh = payment_challenge(client, user)
    assert answer(client, user, fresh, user["key"].pay(fresh["spc"])).status_code == 200


def test_spc_is_not_offered_for_other_actions_and_cannot_answer_them(client, user):
    ch = client.post("/v1/step-up", json={"action": "factor.add"}, headers=user["auth"]).get_json()
    forged_spc = {"credentialIds": [b64url(user["key"].credential_id)], "challenge": ch["webauthn_options"]["challenge"],
                  "rpId": "localhost", "payeeName": "x", "total": {"currency": "JPY", "value": "1"},
                  "instrument": {"displayName": "authsvc", "icon": DEFAULT_ICON}}
    assert answer(client, user, ch, user["key"].pay(forged_spc)).status_code == 401


def test_racing_replays_of_one_spc_assertion_succeed_once(app, client, user):
    ch = payment_challenge(client, user)
    assertion = user["key"].pay(ch["spc"])
    statuses = race([lambda: answer(app.test_client(), user, ch, assertion).status_code] * 6)
    assert sorted(statuses) == [200] + [401] * 5


def test_instrument_is_configurable_and_checked():
    import base64 as b64

    from authsvc.config import ConfigError, Settings

    env = {"AUTHSVC_ENCRYPTION_KEY": "k1:" + b64.b64encode(bytes(range(32))).decode(), "AUTHSVC_RP_NAME": "Example Pay"}
    s = Settings.from_env(env, dev=True)
    assert s.spc_instrument_name == "Example Pay" and s.spc_instrument_icon == ""
    s = Settings.from_env({**env, "AUTHSVC_SPC_INSTRUMENT_NAME": "Visa 4242",
                           "AUTHSVC_SPC_INSTRUMENT_ICON": "https://pay.example/visa.png"}, dev=True)
    assert (s.spc_instrument_name, s.spc_instrument_icon) == ("Visa 4242", "https://pay.example/visa.png")
    with pytest.raises(ConfigError, match="SPC_INSTRUMENT_ICON"):
        Settings.from_env({**env, "AUTHSVC_SPC_INSTRUMENT_ICON": "javascript:alert(1)"}, dev=True)


def test_configured_instrument_is_offered_and_must_be_shown(make_app, settings, twilio, smtp):
    app = make_app(settings.replace(spc_instrument_name="Visa 4242", spc_instrument_icon="https://pay.example/v.png"))
    client = app.test_client()
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_payment_credential(client, account["enrollment_token"], key)
    body = login_password(client, account).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                                "credential": key.get(body["webauthn_options"])}).get_json()
    user = {"auth": bearer(tokens["access_token"]), "key": key}
    ch = payment_challenge(client, user)
    assert ch["spc"]["instrument"] == {"displayName": "Visa 4242", "icon": "https://pay.example/v.png"}
    shown_default = key.pay(ch["spc"], instrument={"displayName": "Visa 4242", "icon": DEFAULT_ICON})
    assert answer(client, user, ch, shown_default).status_code == 401
    assert answer(client, user, ch, key.pay(ch["spc"])).status_code == 200
