"""``acr``/``amr`` tell the truth about the authenticator (NIST SP 800-63B rev. 4): a synced
WebAuthn credential (backup-eligible or backed up) is AAL2 and a software-secured key (``swk``)
whichever path it signs in by; only a device-bound credential with user verification earns
AAL3 (``hwk``). Checked in the login answer, the access token, introspection and step-up."""

from __future__ import annotations

import base64

import jwt
import pytest

from tests.support.flows import bearer, enroll_webauthn, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator
from tests.test_passkey import enroll_passkey, passkey_sign_in

KEYS = {
    "device-bound": ({}, "aal3", "hwk"),
    "backup-eligible": ({"backup_eligible": True}, "aal2", "swk"),
    "backed-up": ({"backup_eligible": True, "backed_up": True}, "aal2", "swk"),
}


def login_with_key(client, account, key) -> dict:
    body = login_password(client, account).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": key.get(body["webauthn_options"])})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.fixture
def backend(app) -> dict:
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.mark.parametrize("kind", list(KEYS))
def test_second_factor_login_and_step_up_say_what_the_key_is(client, twilio, smtp, backend, db, kind):
    flags, acr, key_amr = KEYS[kind]
    account = register(client, twilio, smtp)
    key = SoftAuthenticator(**flags)
    enroll_webauthn(client, account["enrollment_token"], key)
    stored = db.execute("SELECT backup_eligible, backed_up FROM factors").fetchone()
    assert stored == (flags.get("backup_eligible", False), flags.get("backed_up", False))

    tokens = login_with_key(client, account, key)
    assert (tokens["acr"], tokens["amr"]) == (acr, ["pwd", key_amr, "mfa"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert (claims["acr"], claims["amr"]) == (acr, ["pwd", key_amr, "mfa"])
    seen = client.post("/v1/introspect", json={"token": tokens["access_token"]}, headers=backend).get_json()
    assert (seen["acr"], seen["amr"]) == (acr, ["pwd", key_amr, "mfa"])

    auth = bearer(tokens["access_token"])
    ch = client.post("/v1/step-up", json={"action": "factor.add"}, headers=auth).get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": key.get(ch["webauthn_options"])}, headers=auth)
    assert v.status_code == 200, v.get_json()
    assert (v.get_json()["acr"], v.get_json()["amr"]) == (acr, [key_amr, "mfa"])


def test_a_key_registered_before_flags_were_kept_is_judged_by_its_assertions(client, twilio, smtp, db):
    """A credential stored without ``backup_eligible`` (registered before migration 0073) that
    reports BE in an assertion is synced from then on, even if a later assertion says less."""
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    db.execute("UPDATE factors SET backup_eligible = NULL, backed_up = NULL")
    assert login_with_key(client, account, key)["acr"] == "aal3"  # flags clear: device-bound
    assert db.execute("SELECT backup_eligible, backed_up FROM factors").fetchone() == (False, False)
    key.backup_eligible = key.backed_up = True
    assert login_with_key(client, account, key)["acr"] == "aal2"
    assert db.execute("SELECT backup_eligible, backed_up FROM factors").fetchone() == (True, True)
    key.backup_eligible = key.backed_up = False
    tokens = login_with_key(client, account, key)
    assert (tokens["acr"], tokens["amr"]) == ("aal2", ["pwd", "swk", "mfa"])


@pytest.mark.parametrize("kind", list(KEYS))
def test_passkey_sign_in_is_aal2_and_names_the_kind_of_key(client, twilio, smtp, kind):
    flags, _, key_amr = KEYS[kind]
    account = register(client, twilio, smtp)
    key = SoftAuthenticator(**flags)
    enroll_passkey(client, account["enrollment_token"], key)
    r = passkey_sign_in(client, key)
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["acr"], r.get_json()["amr"]) == ("aal2", [key_amr, "user", "mfa"])
