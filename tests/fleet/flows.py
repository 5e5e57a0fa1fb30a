"""Flows the fleet tests share: accounts with a WebAuthn key, sign-ins over HTTP."""

from __future__ import annotations

import base64
import json

from tests.support.flows import enroll_webauthn, register
from tests.support.soft_authenticator import SoftAuthenticator


def new_account(client, twilio, smtp) -> dict:
    account = register(client, twilio, smtp)
    key = SoftAuthenticator(rp_id="auth.test", origin="https://auth.test")  # service_env's PUBLIC_URL
    enroll_webauthn(client, account["enrollment_token"], key)
    return {**account, "key": key}


def sign_in(client, account: dict) -> dict:
    """``{access_token, refresh_token, ...}`` of a new session (password + WebAuthn)."""
    r = client.post("/v1/login", json={"email": account["email"], "password": account["password"]})
    assert r.status_code == 200, r
    body = r.get_json()
    m = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": account["key"].get(body["webauthn_options"])})
    assert m.status_code == 200, m
    return m.get_json()


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}
