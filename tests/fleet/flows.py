"""Flows the fleet tests share: accounts with a WebAuthn key, sign-ins over HTTP."""

from __future__ import annotations

import base64
import json
import time

from tests.support.flows import enroll_webauthn, register
from tests.support.soft_authenticator import SoftAuthenticator

REVOKED_WITHIN = 2.0  # the contract: a revoked client stops everywhere within 2 s


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


PAYMENT = {"amount": "1200.50", "currency": "JPY", "payee": "merchant-42"}


def step_up(client, access_token: str, account: dict, action="payment.authorize", transaction=PAYMENT) -> dict:
    """A step-up challenge answered with the account's WebAuthn key: ``{step_up_token, ...}``."""
    auth = {"Authorization": f"Bearer {access_token}"}
    body = {"action": action, **({"transaction": transaction} if transaction is not None else {})}
    r = client.post("/v1/step-up", json=body, headers=auth)
    assert r.status_code == 201, r
    ch = r.get_json()
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify", headers=auth,
                    json={"method": "webauthn", "credential": account["key"].get(ch["webauthn_options"])})
    assert v.status_code == 200, v
    return v.get_json()


def redeem(client, backend: dict, token: str, action="payment.authorize", transaction=PAYMENT):
    body = {"step_up_token": token, "action": action, **({"transaction": transaction} if transaction else {})}
    return client.post("/v1/step-up/redeem", json=body, headers=backend)


def new_backend(fleet) -> tuple[str, dict]:
    """A payment backend's client, made with the CLI: (client id, Basic auth header)."""
    out = fleet.cli("clients", "create", "payments", "--reason", "fleet test backend")
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return values["client_id"], basic(values["client_id"], values["client_secret"])


def introspect(client, backend: dict, token: str):
    return client.post("/v1/introspect", data={"token": token}, headers=backend)


def client_revoked_everywhere(fleet, twilio, smtp) -> float:
    """A client that every replica has cached, revoked with the CLI: refused by every replica
    within ``REVOKED_WITHIN`` seconds (and from then on); returns how long that took."""
    c = fleet.clients()
    account = new_account(c[0], twilio, smtp)
    token = sign_in(c[0], account)["access_token"]
    client_id, backend = new_backend(fleet)
    for _ in range(6):  # each replica (both workers, most likely) has the client cached
        for client in c:
            assert introspect(client, backend, token).status_code == 200
    fleet.cli("clients", "revoke", client_id, "--reason", "leaked secret, fleet test")
    revoked = time.monotonic()
    pending = set(range(3))
    while pending:
        for i in sorted(pending):
            if introspect(c[i], backend, token).status_code == 401:
                pending.discard(i)
        assert time.monotonic() - revoked <= REVOKED_WITHIN, f"replicas {pending} still accept the client"
        time.sleep(0.05)
    took = time.monotonic() - revoked
    for client in c:  # and it stays refused on every worker
        for _ in range(4):
            assert introspect(client, backend, token).status_code == 401
    return took
