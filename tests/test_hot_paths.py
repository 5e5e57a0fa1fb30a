"""The hot paths stay cheap without weakening a rule (issue 9): every query on the login,
refresh, bearer and introspection paths uses an index (EXPLAIN of its generic plan), and the
caches on those paths never outlive a revocation."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from authsvc.store import QUERIES
from tests.support.flows import bearer, enroll_totp, login_password, register

# Queries run by POST /v1/login, /v1/login/mfa, /v1/token/refresh, bearer checks and
# POST /v1/introspect. A sequential scan in any of them grows with the number of accounts.
HOT_QUERIES = [
    "account_by_email", "account_by_id", "lock_account", "account_lock_remaining",
    "active_totp_factors", "factor_offer",
    "totp_accept_step", "burn_recovery_code", "webauthn_factor_by_credential", "active_factor_count",
    "record_factor_failure", "recent_factor_failures",
    "insert_mfa_token", "lock_live_mfa_token", "mfa_token_failed", "consume_mfa_token",
    "insert_session", "insert_refresh_token", "use_refresh_token", "refresh_token_session",
    "live_session", "live_session_touch", "revoke_session", "kill_refresh_tokens_of_session",
    "sessions_of_account", "client_by_id",
    "live_device_token", "touch_device_token", "insert_device_token", "live_device_token_count",
    "live_device_token_of_session", "device_failure_wait",
    "audit_insert", "outbox_insert",
    # the audit sealer's rounds (every replica, several times a second)
    "audit_unsealed_any", "audit_unsealed_batch", "audit_seal_last", "audit_linked_head", "audit_unsealed_done",
]
_PARAM = re.compile(r"%\((\w+)\)s")


def _seq_scans(plan: dict) -> list[str]:
    found = []
    if plan.get("Node Type") == "Seq Scan":
        found.append(plan.get("Relation Name", "?"))
    for child in plan.get("Plans", []):
        found.extend(_seq_scans(child))
    return found


@pytest.mark.parametrize("name", HOT_QUERIES)
def test_hot_query_uses_an_index(db, name):
    assert name in QUERIES, f"{name} is no longer a query: keep HOT_QUERIES in step with the code"
    names: list[str] = []

    def placeholder(m: re.Match) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    sql = _PARAM.sub(placeholder, QUERIES[name]).replace("%%", "%")
    stmt = f"hot_{name}"
    db.execute(f"PREPARE {stmt} AS {sql}")
    try:
        # The generic plan: what the server runs for any parameter values (psycopg prepares
        # hot statements), planned as if the tables were large.
        db.execute("SET plan_cache_mode = force_generic_plan")
        db.execute("SET enable_seqscan = off")
        args = ", ".join(["NULL"] * len(names))
        (plan,) = db.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {stmt}{f'({args})' if names else ''}").fetchone()
    finally:
        db.execute(f"DEALLOCATE {stmt}")
        db.execute("RESET plan_cache_mode")
        db.execute("RESET enable_seqscan")
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert _seq_scans(plan[0]["Plan"]) == [], f"{name} scans a table sequentially:\n{json.dumps(plan, indent=1)}"


# --------------------------------------------------------------------------- caches vs revocation
@pytest.fixture
def backend(app):
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _signed_in(client, twilio, smtp) -> dict:
    acct = register(client, twilio, smtp)
    totp = enroll_totp(client, acct["enrollment_token"])["totp"]
    mfa_token = login_password(client, acct).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": mfa_token, "method": "totp",
                                                  "code": totp.at(time.time() + 30)})
    assert r.status_code == 200, r.get_json()
    return {**acct, "tokens": r.get_json()}


def test_revocation_in_another_worker_stops_a_cached_token_at_once(make_app, settings, app, backend, twilio, smtp):
    """The verified-token cache of one process never outlives a revocation made by another."""
    client = app.test_client()
    user = _signed_in(client, twilio, smtp)
    token = user["tokens"]["access_token"]
    for _ in range(3):  # verified once, then served from the cache
        assert client.post("/v1/introspect", json={"token": token}, headers=backend).get_json()["active"] is True
    other = make_app(settings).test_client()  # a second worker
    assert other.delete(f"/v1/sessions/{user['tokens']['session_id']}", headers=bearer(token)).status_code == 204
    assert client.post("/v1/introspect", json={"token": token}, headers=backend).get_json() == {"active": False}
    assert client.get("/v1/account", headers=bearer(token)).status_code == 401


def test_frozen_account_stops_a_cached_token_at_once(app, backend, twilio, smtp):
    client = app.test_client()
    user = _signed_in(client, twilio, smtp)
    token = user["tokens"]["access_token"]
    assert client.get("/v1/account", headers=bearer(token)).status_code == 200
    app.extensions["authsvc"].admin.freeze(user["account_id"], operator="test", reason="test")
    assert client.post("/v1/introspect", json={"token": token}, headers=backend).get_json() == {"active": False}


def test_tampered_token_is_never_taken_from_the_cache(app, backend, twilio, smtp):
    client = app.test_client()
    user = _signed_in(client, twilio, smtp)
    token = user["tokens"]["access_token"]
    assert client.post("/v1/introspect", json={"token": token}, headers=backend).get_json()["active"] is True
    head, payload, sig = token.split(".")
    forged = ".".join((head, payload, sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")))
    assert client.post("/v1/introspect", json={"token": forged}, headers=backend).get_json() == {"active": False}


# --------------------------------------------------------------------------- RFC 7662 form bodies
def test_introspection_takes_the_form_body_rfc7662_clients_send(app, backend, twilio, smtp):
    client = app.test_client()
    user = _signed_in(client, twilio, smtp)
    token = user["tokens"]["access_token"]
    r = client.post("/v1/introspect", data={"token": token, "token_type_hint": "access_token"}, headers=backend)
    assert r.status_code == 200 and r.get_json()["active"] is True and r.get_json()["sid"] == user["tokens"]["session_id"]
    form = {**backend, "Content-Type": "application/x-www-form-urlencoded"}
    for bad in (f"token={token}&token={token}", f"token={token}&scope=x", "token=%FF%FE", f"token={token}%00",
                "token", "tok\u00e9n=1".encode()):
        r = client.post("/v1/introspect", data=bad, headers=form)
        assert r.status_code == 400 and r.get_json()["code"] == "invalid_request", (bad, r.get_json())
    assert client.post("/v1/introspect", data={"token": token}).status_code == 401  # no client credentials
