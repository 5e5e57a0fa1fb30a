"""Schemathesis hooks for the contract fuzz run (``SCHEMATHESIS_HOOKS=tests.faults.st_hooks``).

Real credentials for every operation, chosen from the operation's own ``security`` in
``openapi.yaml``: the access token of a live session for ``bearerAuth``, a payment backend's
client id and secret for ``clientCredentials``, and a fresh step-up token (challenge answered
with the account's WebAuthn key) for operations that also need ``stepUpToken``. A session the
fuzzer itself ended (logout, revoke all) is replaced by signing in again.

``ACCOUNT`` is filled in by the test before the run (same process).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import requests
import schemathesis

ACCOUNT: dict[str, Any] = {}
_lock = threading.Lock()

# The step-up action each guarded operation needs (config.BUILTIN_STEP_UP_ACTIONS).
STEP_UP_ACTIONS = {
    ("POST", "/v1/factors/totp"): "factor.add",
    ("POST", "/v1/factors/webauthn/options"): "factor.add",
    ("POST", "/v1/factors/webauthn"): "factor.add",
    ("DELETE", "/v1/factors/{factor_id}"): "factor.remove",
    ("POST", "/v1/factors/recovery-codes"): "factor.recovery_codes",
    ("POST", "/v1/account/phone"): "contact.change",
    ("POST", "/v1/account/email"): "contact.change",
    ("POST", "/v1/payees/trusted"): "payee.trust",
}


def _post(path: str, body: dict, headers: dict | None = None) -> requests.Response:
    return requests.post(ACCOUNT["base_url"] + path, json=body, headers=headers or {}, timeout=30)


def new_session() -> str | None:
    """The access token of a new session of the fuzzed account (password + WebAuthn)."""
    r = _post("/v1/login", {"email": ACCOUNT["email"], "password": ACCOUNT["password"]})
    if r.status_code != 200:  # e.g. 429: sign-ins are throttled per IP
        return None
    body = r.json()
    m = _post("/v1/login/mfa", {"mfa_token": body["mfa_token"], "method": "webauthn",
                                "credential": ACCOUNT["key"].get(body["webauthn_options"])})
    return m.json()["access_token"] if m.status_code == 200 else None


def sign_in(spares: int = 0) -> None:
    """The session the run uses, plus ``spares`` sessions for ``POST /v1/logout`` to end."""
    token = new_session()
    assert token, "the fuzzed account signs in"
    ACCOUNT["access_token"] = token
    ACCOUNT["signed_in_at"] = time.monotonic()
    ACCOUNT.setdefault("spares", [])
    for _ in range(spares):
        spare = new_session()
        if spare:
            ACCOUNT["spares"].append(spare)


def step_up_token(action: str) -> str | None:
    auth = {"Authorization": f"Bearer {ACCOUNT['access_token']}"}
    r = _post("/v1/step-up", {"action": action}, auth)
    if r.status_code != 201:
        return None
    ch = r.json()
    v = _post(f"/v1/step-up/{ch['challenge_id']}/verify",
              {"method": "webauthn", "credential": ACCOUNT["key"].get(ch["webauthn_options"])}, auth)
    return v.json()["step_up_token"] if v.status_code == 200 else None


def _schemes(case: Any) -> set[str]:
    operation = case.operation
    security = operation.definition.raw.get("security", operation.schema.raw_schema.get("security", []))
    return {name for requirement in security for name in requirement}


@schemathesis.auth(refresh_interval=None)
class AuthsvcCredentials:
    def get(self, case: Any, ctx: Any) -> dict[str, str]:
        schemes = _schemes(case)
        headers: dict[str, str] = {}
        with _lock:
            if "clientCredentials" in schemes:
                pair = f"{ACCOUNT['client_id']}:{ACCOUNT['client_secret']}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            elif "bearerAuth" in schemes or "enrollmentToken" in schemes:
                token = ACCOUNT["access_token"]
                if (case.operation.method.upper(), case.operation.path) == ("POST", "/v1/logout") and ACCOUNT["spares"]:
                    token = ACCOUNT["spares"].pop()  # logout ends the session it is called with
                headers["Authorization"] = f"Bearer {token}"
            action = STEP_UP_ACTIONS.get((case.operation.method.upper(), case.operation.path))
            if "stepUpToken" in schemes and action:
                token = step_up_token(action)
                if token:
                    headers["X-Step-Up-Token"] = token
                    ACCOUNT["step_ups"] = ACCOUNT.get("step_ups", 0) + 1
        return headers

    def set(self, case: Any, data: dict[str, str], ctx: Any) -> None:
        case.headers = {**(case.headers or {}), **data}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """The fuzzer may end its own session (logout, revoke all): sign in again, at most every 5 s."""
    if response.status_code != 401 or "Authorization" not in (case.headers or {}):
        return
    if not str(case.headers["Authorization"]).startswith("Bearer "):
        return
    with _lock:
        if time.monotonic() - ACCOUNT.get("signed_in_at", 0) < 5:
            return
        check = requests.get(ACCOUNT["base_url"] + "/v1/account", timeout=30,
                             headers={"Authorization": f"Bearer {ACCOUNT['access_token']}"})
        if check.status_code == 401:
            token = new_session()
            ACCOUNT["signed_in_at"] = time.monotonic()
            if token:
                ACCOUNT["access_token"] = token
                ACCOUNT["sign_ins"] = ACCOUNT.get("sign_ins", 0) + 1


# Fields whose validity no JSON Schema can state: a phone number's numbering plan (the spec
# gives the E.164 shape), the step-up actions this deployment configured, an email address's
# domain (special-use domains such as .test are refused; the spec says so in words), a login
# password's length after NFKC normalisation (a value within maxLength that NFKC expands past
# 128 characters; the spec says so in words), a payee's printability (Unicode's categories:
# no control, format, private-use, unassigned or separator character but the space; an
# ECMA-262 pattern cannot name unassigned code points; the spec says so in words).
SEMANTIC_FIELDS = {"phone", "action", "email", "password", "payee", "transaction.payee"}


@schemathesis.check
def valid_input_is_not_invalid_request(ctx: Any, response: Any, case: Any) -> bool | None:
    """Input the spec calls valid may be refused on its merits (a wrong code, a weak password),
    never as malformed: a 400 ``invalid_request`` to schema-valid input means the spec is
    looser than the server."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    if isinstance(problem, dict) and problem.get("code") == "invalid_request":
        fields = {e.get("field") for e in problem.get("errors") or [] if isinstance(e, dict)}
        if fields and fields <= SEMANTIC_FIELDS:
            return None
        raise AssertionError(f"schema-valid input refused as invalid_request: {problem.get('errors') or problem.get('detail')}")
    return None
