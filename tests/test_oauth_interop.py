"""Stock OAuth/JOSE clients nobody here wrote work against the service as their documentation
shows: Authlib's ``introspect_token`` and Node ``openid-client`` v6 ``tokenIntrospection``
(client authentication as RFC 6749 section 2.3.1 has it: id and secret form-urlencoded, then
Base64), a refused client's answer carries OAuth's ``error`` member; ``oauth4webapi``'s
``validateJwtAccessToken`` (RFC 9068) and Authlib's JOSE accept the access tokens found through
the RFC 8414 metadata.

The Node test needs ``node`` (>= 20) and the packages pinned in tests/node/package-lock.json
(``npm ci --prefix tests/node``; ``.ci/run`` installs both when it can); it is skipped, saying
why, where either is missing.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from werkzeug.serving import make_server

from tests.support.flows import enroll_totp, login_password, register

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE = shutil.which("node")


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def form_urlencode(value: str) -> str:
    """RFC 6749 appendix B, as oauth4webapi/openid-client do it: every character but
    ALPHA / DIGIT escaped (``_`` becomes ``%5F``), space as ``+``."""
    return "".join(c if c.isascii() and c.isalnum() else "+" if c == " " else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in value)


@pytest.fixture
def live(make_app, settings):
    """The service (production settings) on a free port of 127.0.0.1, issuer = its URL."""
    srv = make_server("127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True)
    origin = f"http://127.0.0.1:{srv.port}"
    holder = {"app": make_app(settings.replace(issuer=origin, public_url=origin))}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"origin": origin, "app": holder["app"]}
    srv.shutdown()


@pytest.fixture
def signed_in(live, twilio, smtp) -> dict:
    client = live["app"].test_client()
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    mfa = login_password(client, account).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": mfa, "method": "totp", "code": factor["totp"].at(time.time() + 30)})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.fixture
def backend(live) -> tuple[str, str]:
    return live["app"].extensions["authsvc"].clients.create("gateway", operator="test", reason="test")


# ------------------------------------------------------------------ RFC 6749 2.3.1 on the wire
def test_client_credentials_are_form_urldecoded_after_base64(app, client):
    client_id, secret = app.extensions["authsvc"].clients.create("gateway", operator="test", reason="test")
    token = "not-a-token"
    encoded = basic(form_urlencode(client_id), form_urlencode(secret))
    assert "%5F" in base64.b64decode(encoded["Authorization"][6:]).decode()  # cl_ goes as cl%5F
    for headers in (encoded, basic(client_id, secret), basic(quote(client_id), quote(secret))):
        r = client.post("/v1/introspect", data={"token": token}, headers=headers)
        assert r.status_code == 200, r.get_json()
        assert r.get_json() == {"active": False}
    # decoding never turns a wrong secret into a right one, nor bad escapes into a 500
    for headers in (basic(form_urlencode(client_id), form_urlencode(secret) + "%41"),
                    basic(client_id, secret[:-1] + "+"),
                    basic(client_id + "%FF", secret), basic(client_id, "%E3%81"), basic("%3A", "%3A")):
        r = client.post("/v1/introspect", data={"token": token}, headers=headers)
        assert r.status_code == 401, r.get_json()
        assert r.get_json()["code"] == r.get_json()["error"] == "invalid_client"


def test_a_refused_client_gets_oauths_error_member_in_the_problem_document(app, client):
    for headers in ({}, {"Authorization": "Basic !!!"}, basic("cl_nobody", "wrong")):
        r = client.post("/v1/introspect", data={"token": "x"}, headers=headers)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert r.mimetype == "application/problem+json"
        body = r.get_json()
        assert {"type", "title", "status", "code", "detail"} <= body.keys()
        assert body["error"] == "invalid_client" and body["error_description"] == body["detail"]
    r = client.post("/v1/step-up/redeem", json={"step_up_token": "x", "action": "payment.authorize"},
                    headers=basic("cl_nobody", "wrong"))
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"


# ------------------------------------------------------------------ Authlib
def test_authlib_introspects_and_reads_a_refusal(live, signed_in, backend, monkeypatch):
    from authlib.integrations.requests_client import OAuth2Session

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on 127.0.0.1
    client_id, secret = backend
    url = live["origin"] + "/v1/introspect"
    with OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic") as session:
        r = session.introspect_token(url, token=signed_in["access_token"], token_type_hint="access_token")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["active"] is True and body["sid"] == signed_in["session_id"] and body["acr"] == "aal2"
        assert body["client_id"] == live["app"].extensions["authsvc"].settings.frontend_client_id
        assert session.introspect_token(url, token=signed_in["refresh_token"]).json() == {"active": False}
    with OAuth2Session(client_id, secret + "x", token_endpoint_auth_method="client_secret_basic") as session:
        r = session.introspect_token(url, token=signed_in["access_token"])
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# ------------------------------------------------------------------ Node openid-client v6
def node(script: str, args: dict) -> dict:
    if NODE is None:
        pytest.skip("no node on PATH (apt-get install nodejs npm; .ci/run does it as root)")
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 20:
        pytest.skip(f"node {version} is too old for openid-client v6 (needs >= 20: WebCrypto on globalThis)")
    if not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        pytest.skip("tests/node packages not installed (npm ci --prefix tests/node; .ci/run does it)")
    out = subprocess.run([NODE, str(NODE_DIR / script), json.dumps(args)], capture_output=True, text=True,
                         timeout=60, cwd=NODE_DIR)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_openid_client_discovers_and_introspects_with_client_secret_basic(live, signed_in, backend):
    client_id, secret = backend
    args = {"issuer": live["origin"], "client_id": client_id, "client_secret": secret,
            "token": signed_in["access_token"]}
    answer = node("introspect.mjs", args)
    assert answer["ok"], answer
    assert answer["metadata"]["introspection_endpoint"] == live["origin"] + "/v1/introspect"
    assert answer["result"]["active"] is True and answer["result"]["sid"] == signed_in["session_id"]
    refused = node("introspect.mjs", {**args, "client_secret": secret[:-2]})
    assert not refused["ok"]
    assert refused["error"]["status"] == 401, refused


def test_oauth4webapi_validates_the_access_token_as_an_rfc_9068_resource_server(live, signed_in, settings):
    args = {"issuer": live["origin"], "audience": settings.audience, "token": signed_in["access_token"]}
    answer = node("resource-server.mjs", args)
    assert answer["ok"], answer
    claims = answer["claims"]
    assert claims["client_id"] == settings.frontend_client_id and claims["sid"] == signed_in["session_id"]
    assert claims["iss"] == live["origin"] and claims["acr"] == "aal2"
    # the same checks refuse a token for another audience and a tampered one
    assert not node("resource-server.mjs", {**args, "audience": "someone-else"})["ok"]
    head, body, sig = signed_in["access_token"].split(".")
    assert not node("resource-server.mjs", {**args, "token": f"{head}.{body}.{sig[:-4]}AAAA"})["ok"]


# ------------------------------------------------------------------ RFC 8414 and RFC 9068
def test_metadata_names_the_issuer_keys_and_introspection(live, signed_in, settings):
    import requests

    r = requests.get(live["origin"] + "/.well-known/oauth-authorization-server", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    meta = r.json()
    origin = live["origin"]
    assert meta["issuer"] == origin
    assert meta["jwks_uri"] == origin + "/.well-known/jwks.json"
    assert meta["introspection_endpoint"] == origin + "/v1/introspect"
    assert meta["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert meta["access_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["response_types_supported"] == []
    assert "token_endpoint" not in meta and "authorization_endpoint" not in meta  # none exists
    # what it points at works: the JWKS verifies the token with joserfc (Authlib's JOSE)
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    token = jose_jwt.decode(signed_in["access_token"], keys, algorithms=meta["access_token_signing_alg_values_supported"])
    jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": meta["issuer"]},
                               aud={"essential": True, "value": settings.audience},
                               client_id={"essential": True, "value": settings.frontend_client_id},
                               jti={"essential": True}, sub={"essential": True}).validate(token.claims)
    assert token.header["typ"] == "at+jwt"
    assert {"iss", "aud", "sub", "sid", "iat", "exp", "auth_time", "acr", "amr", "jti", "client_id"} <= token.claims.keys()


def test_client_id_is_the_configured_frontend(twilio, smtp, settings, make_app):
    app = make_app(settings.replace(frontend_client_id="wallet-ios"))
    client = app.test_client()
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    mfa = login_password(client, account).get_json()["mfa_token"]
    r = client.post("/v1/login/mfa", json={"mfa_token": mfa, "method": "totp", "code": factor["totp"].at(time.time() + 30)})
    import jwt

    assert jwt.decode(r.get_json()["access_token"], options={"verify_signature": False})["client_id"] == "wallet-ios"
