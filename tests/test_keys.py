"""Signing keys and access tokens against the real database: KeyService, tokens, JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import types
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from psycopg.rows import dict_row

from authsvc import errors
from authsvc.api import jwks as jwks_api
from authsvc.security import tokens
from authsvc.security.crypto import Cipher
from authsvc.services.platform import keys as keys_module
from authsvc.services.platform.keys import PUBLISH_LEAD, UNHEARD_SECONDS, KeyService
from authsvc.store import Store


@pytest.fixture
def store(settings):
    s = Store(settings.database_url)
    yield s
    s.close()


@pytest.fixture
def cipher(settings):
    return Cipher(settings.encryption_keys)


@pytest.fixture
def ks(store, cipher, settings):
    from authsvc.services.platform.audit import AuditChain

    AuditChain(cipher).install(store).ensure(store)  # rotations with an actor are audited
    return KeyService(store, cipher, settings)


def claims(settings, **over):
    now = int(time.time())
    c = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + settings.access_token_ttl,
        "auth_time": now - 5,
        "acr": "aal2",
        "amr": ["pwd", "otp", "mfa"],
        "jti": str(uuid.uuid4()),
    }
    c.update(over)
    return c


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def activate_now(db, kid):
    """Let a pending key's activation time come now (a rotation signs after ``PUBLISH_LEAD``)."""
    db.execute("UPDATE signing_keys SET activate_at = clock_timestamp() WHERE kid = %s", (kid,))


def key_rows(db):
    return db.cursor(row_factory=dict_row).execute(
        "SELECT kid, private_key_enc, public_jwk, activate_at, publish_until FROM signing_keys ORDER BY created_at"
    ).fetchall()


# ---------------------------------------------------------------------- sign / verify
def test_sign_verify_roundtrip_with_contract_claims(ks, settings):
    c = claims(settings)
    token = ks.sign(c)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": header["kid"], "typ": "at+jwt"}
    assert ks.verify(token) == c
    # a separate instance (another process) verifies too
    assert KeyService(ks._store, ks._cipher, settings).verify(token) == c


def test_sign_refuses_incomplete_claims(ks, settings):
    c = claims(settings)
    del c["sid"]
    with pytest.raises(ValueError):
        ks.sign(c)


def test_first_sign_creates_exactly_one_key_under_concurrency(store, cipher, settings, db):
    assert key_rows(db) == []
    n = 8
    barrier = threading.Barrier(n)
    results, failures = [], []

    def work():
        service = KeyService(store, cipher, settings)  # one per "process": no shared cache
        try:
            barrier.wait()
            results.append(service.sign(claims(settings)))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    rows = key_rows(db)
    assert len(rows) == 1
    assert {kid_of(t) for t in results} == {rows[0]["kid"]}
    assert rows[0]["publish_until"] is None


def test_private_key_is_stored_encrypted(ks, settings, db, cipher):
    ks.sign(claims(settings))
    (row,) = key_rows(db)
    stored, kid = row["private_key_enc"], row["kid"]
    assert "PRIVATE KEY" not in stored and "BEGIN" not in stored
    assert stored.startswith("v1.t1.")
    pem = cipher.decrypt(stored, aad=b"signing-key:" + kid.encode())
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(errors.DecryptionError):  # bound to its kid
        cipher.decrypt(stored, aad=b"signing-key:other")
    jwk = row["public_jwk"]
    assert "d" not in jwk and jwk["kid"] == kid


# ---------------------------------------------------------------------- refused tokens
def _tamper_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64(bytes(raw))}"


def _tamper_payload(token: str) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["sub"] = str(uuid.uuid4())
    return f"{head}.{b64json(body)}.{sig}"


@pytest.mark.parametrize("tamper", [_tamper_signature, _tamper_payload])
def test_tampered_token_is_refused(ks, settings, tamper):
    token = ks.sign(claims(settings))
    ks.verify(token)
    with pytest.raises(errors.InvalidToken):
        ks.verify(tamper(token))


@pytest.mark.parametrize(
    "override",
    [
        {"iss": "https://evil.test"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 120},  # beyond the 30 s leeway
        {"iat": int(time.time()) + 3600},  # issued in the future
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["wrong-iss", "wrong-aud", "expired", "iat-future", "nbf-future"],
)
def test_claim_checks(ks, settings, override):
    with pytest.raises(errors.InvalidToken) as exc:
        ks.verify(ks.sign(claims(settings, **override)))
    assert exc.value.detail == "invalid or expired token"  # generic, says nothing specific


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub", "sid", "jti"])
def test_required_claims(ks, settings, missing):
    ks.ensure_signing_key()
    kid = ks._signing_kid()
    c = claims(settings)
    del c[missing]
    token = tokens.sign(c, kid=kid, private_pem=ks._private_key(kid))
    with pytest.raises(errors.InvalidToken):
        ks.verify(token)


def test_alg_none_is_refused(ks, settings):
    kid = kid_of(ks.sign(claims(settings)))
    for alg in ("none", "None", "NONE"):
        token = f"{b64json({'alg': alg, 'kid': kid, 'typ': 'at+jwt'})}.{b64json(claims(settings))}."
        with pytest.raises(errors.InvalidToken):
            ks.verify(token)


def test_hs256_with_public_key_as_secret_is_refused(ks, settings):
    kid = kid_of(ks.sign(claims(settings)))
    (jwk,) = [k for k in ks.jwks()["keys"] if k["kid"] == kid]
    public_pem = tokens.load_public_key(jwk).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(jwk).encode(), jwk["x"].encode()):
        signing_input = f"{b64json({'alg': 'HS256', 'kid': kid, 'typ': 'at+jwt'})}.{b64json(claims(settings))}"
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(errors.InvalidToken):
            ks.verify(f"{signing_input}.{b64(sig)}")


def test_rs256_is_refused(ks, settings):
    kid = kid_of(ks.sign(claims(settings)))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(settings), rsa_key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
    with pytest.raises(errors.InvalidToken):
        ks.verify(token)


def test_unknown_kid_and_foreign_key_are_refused(ks, settings):
    ks.sign(claims(settings))
    kid, pem, _ = tokens.generate_es256_key()
    with pytest.raises(errors.InvalidToken):  # unknown kid
        ks.verify(tokens.sign(claims(settings), kid=kid, private_pem=pem))
    real_kid = ks._signing_kid()
    with pytest.raises(errors.InvalidToken):  # known kid, wrong key
        ks.verify(tokens.sign(claims(settings), kid=real_kid, private_pem=pem))
    with pytest.raises(errors.InvalidToken):  # no kid at all
        ks.verify(jwt.encode(claims(settings), tokens.load_private_key(pem), algorithm="ES256"))


def test_wrong_typ_and_garbage_are_refused(ks, settings):
    kid = ks.ensure_signing_key()
    key = ks._private_key(kid)
    for typ in ("JWT", None):
        token = jwt.encode(claims(settings), key, algorithm="ES256", headers={"kid": kid, "typ": typ})
        with pytest.raises(errors.InvalidToken):
            ks.verify(token)
    for garbage in ("", "abc", "a.b.c", "a.b", "." * 2, "x" * 10000, None, 42):
        with pytest.raises(errors.InvalidToken):
            ks.verify(garbage)


def test_unknown_kid_refreshes_once_from_the_database(store, cipher, settings, db, monkeypatch):
    monkeypatch.setattr(keys_module, "UNHEARD_SECONDS", 60.0)  # a keeps its snapshot here
    a = KeyService(store, cipher, settings, listen=False)
    b = KeyService(store, cipher, settings)
    a.verify(a.sign(claims(settings)))  # a has the keys cached now
    activate_now(db, b.rotate(activate_in=0))
    b.refresh()
    token = b.sign(claims(settings))
    assert token and kid_of(token) not in a._current().public_keys()
    assert a.verify(token)["iss"] == settings.issuer  # unknown kid -> reloaded


# ---------------------------------------------------------------------- rotation / JWKS
def test_rotation_publishes_ahead_of_use(ks, settings, db):
    old = kid_of(ks.sign(claims(settings)))
    new = ks.rotate(activate_in=300)
    assert new != old
    assert {k["kid"] for k in ks.jwks()["keys"]} == {old, new}
    token = ks.sign(claims(settings))
    assert kid_of(token) == old  # still signed by the old key
    assert ks.verify(token)
    # the old key stays published until the new one signs + one token lifetime + margin
    rows = {r["kid"]: r for r in key_rows(db)}
    assert rows[new]["publish_until"] is None
    gap = (rows[old]["publish_until"] - rows[new]["activate_at"]).total_seconds()
    assert gap == settings.access_token_ttl + 60
    # once the activation time has come, the new key signs
    db.execute("UPDATE signing_keys SET activate_at = now() - interval '1 second' WHERE kid = %s", (new,))
    other = KeyService(ks._store, ks._cipher, settings)
    assert kid_of(other.sign(claims(settings))) == new


def test_rotation_switches_signing_and_old_tokens_still_verify(ks, settings, db):
    old_token = ks.sign(claims(settings))
    old = kid_of(old_token)
    new = ks.rotate(activate_in=0)
    assert kid_of(ks.sign(claims(settings))) == old  # published first, signs after the lead
    activate_now(db, new)
    ks.refresh()
    token = ks.sign(claims(settings))
    assert kid_of(token) == new
    assert ks.verify(token)
    assert ks.verify(old_token)  # old key still published
    assert {k["kid"] for k in ks.jwks()["keys"]} == {old, new}
    fresh = KeyService(ks._store, ks._cipher, settings)
    assert fresh.verify(old_token) and fresh.verify(token)


def _wait_for(predicate, seconds, message):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)
    return time.monotonic()


def test_a_rotation_anywhere_reaches_every_replica_before_the_new_key_signs(settings, cipher, db):
    """Three replicas (a store, its pool and its listener each) with keys cached, and an
    operator's CLI process rotating with --activate-in 0: every replica publishes the new key
    at once (the notification), none signs with it before the lead has passed, and every one
    signs with it as soon as it has."""
    stores = [Store(settings.database_url) for _ in range(4)]
    try:
        replicas = [KeyService(s, cipher, settings) for s in stores[:3]]
        old = {kid_of(r.sign(claims(settings))) for r in replicas}.pop()
        for r in replicas:  # each one caches the key set and listens
            _wait_for(lambda r=r: r._listening, 5, "a replica's listener did not start")
            r.jwks()
        operator = KeyService(stores[3], cipher, settings, listen=False)
        rotated = time.monotonic()
        new = operator.rotate(activate_in=0)
        row = next(r for r in key_rows(db) if r["kid"] == new)
        created = db.execute("SELECT created_at FROM signing_keys WHERE kid = %s", (new,)).fetchone()[0]
        assert (row["activate_at"] - created).total_seconds() >= PUBLISH_LEAD
        for r in replicas:
            published = _wait_for(lambda r=r: new in {k["kid"] for k in r.jwks()["keys"]}, 2,
                                  "a replica did not publish the new key")
            assert published - rotated < PUBLISH_LEAD
            assert kid_of(r.sign(claims(settings))) == old  # not before the lead
        for r in replicas:
            _wait_for(lambda r=r: kid_of(r.sign(claims(settings))) == new, PUBLISH_LEAD + 2,
                      "a replica kept signing with the old key")
    finally:
        for s in stores:
            s.close()


def test_a_replica_that_cannot_listen_reloads_within_the_short_bound(store, cipher, settings, db):
    deaf = KeyService(store, cipher, settings, listen=False)
    deaf.sign(claims(settings))
    other = KeyService(store, cipher, settings, listen=False)
    new = other.rotate(activate_in=60)
    started = time.monotonic()
    _wait_for(lambda: new in {k["kid"] for k in deaf.jwks()["keys"]}, UNHEARD_SECONDS + 2,
              "a replica without notifications kept its old key set")
    assert time.monotonic() - started <= UNHEARD_SECONDS + 1
    assert UNHEARD_SECONDS < PUBLISH_LEAD


def test_a_key_changed_by_hand_reaches_a_listening_replica(ks, settings, db):
    """The notification comes from a trigger: even an operator's own SQL is heard."""
    ks.sign(claims(settings))
    _wait_for(lambda: ks._listening, 5, "the listener did not start")
    pending = ks.rotate(activate_in=300)
    ks.jwks()
    activate_now(db, pending)
    _wait_for(lambda: kid_of(ks.sign(claims(settings))) == pending, 2, "a hand-made change was not heard")


def test_rotate_again_before_activation_supersedes_pending_key(ks, settings, db):
    ks.sign(claims(settings))
    pending = ks.rotate(activate_in=300)
    newest = ks.rotate(activate_in=0)
    activate_now(db, newest)
    ks.refresh()
    assert kid_of(ks.sign(claims(settings))) == newest
    assert pending in {k["kid"] for k in ks.jwks()["keys"]}


def test_rotate_on_empty_database_keeps_a_signing_key(ks, settings, db):
    pending = ks.rotate(activate_in=300)
    token = ks.sign(claims(settings))
    assert kid_of(token) != pending
    assert ks.verify(token)
    assert len(key_rows(db)) == 2


def test_rotate_audits_when_an_actor_is_given(ks, db):
    kid = ks.rotate(activate_in=60, actor="operator:alice", reason="yearly rotation")
    row = db.execute("SELECT actor, action, detail FROM audit_log WHERE action = 'keys.rotated'").fetchone()
    assert row[0] == "operator:alice" and row[2]["kid"] == kid and row[2]["reason"] == "yearly rotation"


def test_rotate_validates_activate_in(ks):
    for bad in (-1, 10**9):
        with pytest.raises(ValueError):
            ks.rotate(activate_in=bad)
    with pytest.raises(TypeError):
        ks.rotate(activate_in="5")  # type: ignore[arg-type]


def test_expired_publication_removes_key_and_its_tokens(ks, settings, db):
    old_token = ks.sign(claims(settings))
    old = kid_of(old_token)
    new = ks.rotate(activate_in=0)
    activate_now(db, new)
    db.execute("UPDATE signing_keys SET publish_until = now() - interval '1 second' WHERE kid = %s", (old,))
    ks.refresh()
    assert [k["kid"] for k in ks.jwks()["keys"]] == [new]
    with pytest.raises(errors.InvalidToken):
        ks.verify(old_token)
    fresh = KeyService(ks._store, ks._cipher, settings)
    with pytest.raises(errors.InvalidToken):
        fresh.verify(old_token)
    assert kid_of(fresh.sign(claims(settings))) == new
    # long-gone keys can be pruned (private halves deleted)
    db.execute("UPDATE signing_keys SET publish_until = now() - interval '30 days' WHERE kid = %s", (old,))
    assert ks.prune() == [old]
    assert [r["kid"] for r in key_rows(db)] == [new]


def test_cached_keys_expire_at_publish_until(store, cipher, settings, db):
    ks = KeyService(store, cipher, settings)
    old_token = ks.sign(claims(settings))
    old = kid_of(old_token)
    ks.rotate(activate_in=0)
    db.execute("UPDATE signing_keys SET publish_until = now() + interval '1 second' WHERE kid = %s", (old,))
    ks.refresh()
    assert ks.verify(old_token)
    time.sleep(1.2)
    with pytest.raises(errors.InvalidToken):  # no explicit refresh: the cache knew the deadline
        ks.verify(old_token)


def test_jwks_has_only_public_members(ks, settings):
    ks.sign(claims(settings))
    ks.rotate(activate_in=300)
    keys = ks.jwks()["keys"]
    assert len(keys) == 2
    for k in keys:
        assert set(k) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert k["kty"] == "EC" and k["crv"] == "P-256" and k["alg"] == "ES256" and k["use"] == "sig"


def test_jwks_before_first_login_already_has_a_key(ks, settings, db):
    (key,) = ks.jwks()["keys"]
    assert [r["kid"] for r in key_rows(db)] == [key["kid"]]
    assert kid_of(ks.sign(claims(settings))) == key["kid"]


def test_jwks_endpoint(ks, settings):
    token = ks.sign(claims(settings))
    app = Flask(__name__)
    app.extensions["authsvc"] = types.SimpleNamespace(keys=ks)
    app.register_blueprint(jwks_api.bp)
    resp = app.test_client().get("/.well-known/jwks.json")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert [k["kid"] for k in body["keys"]] == [kid_of(token)]
    assert "d" not in body["keys"][0]
    # a third party verifies with nothing but the published JWKS (PyJWT's own JWK support)
    verified = jwt.decode(
        token,
        jwt.PyJWK(body["keys"][0]),
        algorithms=["ES256"],
        audience=settings.audience,
        issuer=settings.issuer,
    )
    assert verified["sid"]


# ---------------------------------------------------------------------- tokens module
def test_generated_key_shape():
    kid, pem, jwk = tokens.generate_es256_key()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"} and jwk["kid"] == kid
    assert kid == b64(tokens.jwk_thumbprint(jwk)[:16])
    assert tokens.header_kid(tokens.sign({"a": 1}, kid=kid, private_pem=pem)) == kid
    assert tokens.header_kid("garbage") is None


def test_decode_accepts_jwk_dicts_and_refuses_private_jwks(settings):
    kid, pem, jwk = tokens.generate_es256_key()
    token = tokens.sign(claims(settings), kid=kid, private_pem=pem)
    assert tokens.decode(token, public_keys={kid: jwk}, issuer=settings.issuer, audience=settings.audience)
    private_jwk = jwt.algorithms.ECAlgorithm.to_jwk(tokens.load_private_key(pem), as_dict=True)
    with pytest.raises(errors.InvalidToken):
        tokens.decode(token, public_keys={kid: private_jwk}, issuer=settings.issuer, audience=settings.audience)


def test_withdraw_unpublishes_a_key_now_audited_but_never_the_signing_one(ks, settings, db):
    old_token = ks.sign(claims(settings))
    old = kid_of(old_token)
    with pytest.raises(errors.Conflict):
        ks.withdraw(old, actor="operator:alice", reason="compromised")
    activate_now(db, ks.rotate(activate_in=0))
    ks.refresh()
    assert ks.withdraw(old, actor="operator:alice", reason="compromised") is True
    with pytest.raises(errors.InvalidToken):
        ks.verify(old_token)
    assert old not in {k["kid"] for k in ks.jwks()["keys"]}
    assert ks.withdraw(old, actor="operator:alice", reason="again") is False  # nothing left to withdraw
    row = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'keys.withdrawn'").fetchone()
    assert row[0] == "operator:alice" and row[1]["kid"] == old and row[1]["reason"] == "compromised"
