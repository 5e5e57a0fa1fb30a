"""Malformed second-factor answers and over-long passwords are 400s that change nothing;
RFC 7662 introspection takes the form-encoded body its clients send, as strictly as JSON."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlencode

import pytest

from tests.support.flows import bearer, enroll_totp, login_password, register


@pytest.fixture
def user(client, twilio, smtp):
    account = register(client, twilio, smtp)
    return {**account, "factor": enroll_totp(client, account["enrollment_token"])}


@pytest.fixture
def backend(app):
    client_id, secret = app.extensions["authsvc"].clients.create("gateway", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def sign_in(client, user) -> dict:
    body = login_password(client, user).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "totp",
                                           "code": user["factor"]["totp"].at(time.time() + 30)})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# ---------------------------------------------------------------------------- factor answers
@pytest.mark.parametrize("answer, field", [
    ({"method": "totp", "code": None}, "code"),
    ({"method": "totp"}, "code"),
    ({"method": "recovery_code", "code": None}, "code"),
    ({"method": "webauthn", "credential": None}, "credential"),
    ({"method": "totp", "code": "123456", "credential": {"id": "x"}}, "credential"),
])
def test_a_missing_answer_is_a_400_naming_the_field_and_not_a_wrong_answer(client, user, db, answer, field):
    mfa_token = login_password(client, user).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": mfa_token, **answer})
    assert r.status_code == 400
    body = r.get_json()
    assert body["code"] == "invalid_request" and field in [e["field"] for e in body["errors"]]
    assert db.execute("SELECT failed_attempts FROM mfa_tokens").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM factor_failures").fetchone()[0] == 0
    # the mfa_token still takes a real answer
    ok = client.post("/v1/login/mfa", json={"mfa_token": mfa_token, "method": "totp",
                                            "code": user["factor"]["totp"].at(time.time() + 30)})
    assert ok.status_code == 200


def test_a_null_code_in_step_up_is_a_400_too(client, user, db):
    tokens = sign_in(client, user)
    ch = client.post("/v1/step-up", json={"action": "factor.add"}, headers=bearer(tokens["access_token"])).get_json()
    r = client.post(f"/v1/step-up/{ch['challenge_id']}/verify", json={"method": "totp", "code": None},
                    headers=bearer(tokens["access_token"]))
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "code"
    assert db.execute("SELECT failed_attempts FROM step_up_challenges").fetchone()[0] == 0


# ---------------------------------------------------------------------------- long passwords
def test_a_password_over_128_characters_is_a_400_at_login(client, user):
    for email in (user["email"], "nobody@example.com"):
        r = client.post("/v1/login", json={"email": email, "password": "x" * 129})
        assert r.status_code == 400, r.get_json()
        body = r.get_json()
        assert body["code"] == "invalid_request" and body["errors"][0]["field"] == "password"
    # 128 is allowed (and wrong); the limit counts characters after NFKC
    assert client.post("/v1/login", json={"email": user["email"], "password": "x" * 128}).status_code == 401
    composed_to_128 = "x" * 127 + "e\u0301"  # 129 code points, 128 after NFKC
    assert client.post("/v1/login", json={"email": user["email"], "password": composed_to_128}).status_code == 401
    expands_past_128 = "x" * 120 + "\ufdfa"  # 121 code points, 138 after NFKC
    assert client.post("/v1/login", json={"email": user["email"], "password": expands_past_128}).status_code == 400


# ---------------------------------------------------------------------------- introspection
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_introspection_takes_an_rfc_7662_form(client, user, backend):
    tokens = sign_in(client, user)
    body = urlencode({"token": tokens["access_token"], "token_type_hint": "access_token"})
    r = client.post("/v1/introspect", data=body, headers={**backend, **FORM})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["active"] is True and r.get_json()["sub"] == user["account_id"]
    r = client.post("/v1/introspect", data=urlencode({"token": tokens["access_token"]}),
                    headers={**backend, "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert r.get_json()["active"] is True
    # JSON keeps working; a refresh token is not introspected
    assert client.post("/v1/introspect", json={"token": tokens["access_token"]}, headers=backend).get_json()["active"]
    r = client.post("/v1/introspect", data=urlencode({"token": tokens["refresh_token"],
                                                      "token_type_hint": "refresh_token"}), headers={**backend, **FORM})
    assert r.status_code == 200 and r.get_json() == {"active": False}


@pytest.mark.parametrize("raw", [
    "token=a&token=b",                # duplicate
    "token=a&scope=payments",         # unknown field
    "token_type_hint=access_token",   # no token
    "token=a&token_type_hint=id_token",
    "token=%zz",                      # broken percent-encoding
    "token=%ff%fe",                   # not UTF-8
    "token=a%00b",                    # NUL
    "token",                          # not key=value
])
def test_introspection_forms_are_as_strict_as_json(client, backend, raw):
    r = client.post("/v1/introspect", data=raw, headers={**backend, **FORM})
    assert r.status_code == 400, (raw, r.get_json())
    assert r.get_json()["code"] == "invalid_request"


def test_introspection_refuses_other_media_types_and_needs_client_credentials(client, user, backend):
    tokens = sign_in(client, user)
    r = client.post("/v1/introspect", data=f"token={tokens['access_token']}",
                    headers={**backend, "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/introspect", data=urlencode({"token": tokens["access_token"]}), headers=FORM)
    assert r.status_code == 401
