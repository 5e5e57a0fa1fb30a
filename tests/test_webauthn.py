"""authsvc.security.webauthn against py_webauthn's real checks, fed by a soft authenticator."""

from __future__ import annotations

import hashlib
import json
import os
import random

import cbor2
import pytest

from authsvc import errors
from authsvc.security.webauthn import RegisteredCredential, WebAuthn
from tests.support.soft_authenticator import SoftAuthenticator, b64url, b64url_decode

RP_ID = "localhost"
ORIGIN = "http://localhost:8000"
SECOND_ORIGIN = "http://localhost:3000"
USER_ID = b"\x01" * 16


@pytest.fixture
def wa() -> WebAuthn:
    return WebAuthn(rp_id=RP_ID, rp_name="authsvc tests", origins=[ORIGIN, SECOND_ORIGIN])


def reg_options(wa: WebAuthn) -> tuple[dict, bytes]:
    return wa.registration_options(user_id=USER_ID, user_name="alice", user_display_name="Alice")


def register(wa: WebAuthn, authn: SoftAuthenticator) -> RegisteredCredential:
    options, challenge = reg_options(wa)
    return wa.verify_registration(credential=authn.create(options), expected_challenge=challenge)


def verify(wa: WebAuthn, assertion, challenge: bytes, reg: RegisteredCredential, stored=0) -> int:
    return wa.verify_authentication(
        credential=assertion,
        expected_challenge=challenge,
        public_key=reg.public_key,
        current_sign_count=stored,
    ).sign_count


def authenticate(wa: WebAuthn, authn: SoftAuthenticator, reg: RegisteredCredential, stored: int):
    options, challenge = wa.authentication_options(allow_credential_ids=[reg.credential_id])
    return verify(wa, authn.get(options), challenge, reg, stored)


# --- options ------------------------------------------------------------------------------
def test_registration_options_policy(wa):
    excluded = [os.urandom(32), os.urandom(16)]
    options, challenge = wa.registration_options(
        user_id=USER_ID,
        user_name="alice@example.com",
        user_display_name="Alice",
        exclude_credential_ids=excluded,
    )
    json.dumps(options)  # JSON-ready
    assert len(challenge) >= 16 and options["challenge"] == b64url(challenge)
    assert options["rp"] == {"id": RP_ID, "name": "authsvc tests"}
    assert options["user"] == {
        "id": b64url(USER_ID), "name": "alice@example.com", "displayName": "Alice"
    }
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert options["attestation"] == "none"
    assert options["timeout"] == 300_000
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(c) for c in excluded]


def test_registration_options_reject_empty_user_id(wa):
    # py_webauthn would silently put a random user handle in its place.
    with pytest.raises(ValueError):
        wa.registration_options(user_id=b"", user_name="alice", user_display_name="Alice")


def test_authentication_options_policy(wa):
    ids = [os.urandom(32)]
    options, challenge = wa.authentication_options(allow_credential_ids=ids)
    json.dumps(options)
    assert len(challenge) >= 16 and options["challenge"] == b64url(challenge)
    assert options["userVerification"] == "required"
    assert options["rpId"] == RP_ID
    assert options["timeout"] == 300_000
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(ids[0])]


def test_given_challenge_is_used_as_is(wa):
    authn = SoftAuthenticator()
    reg = register(wa, authn)
    tx_challenge = hashlib.sha256(b"pay 12.00 EUR to ACME, tx 42").digest()
    options, challenge = wa.authentication_options(
        allow_credential_ids=[reg.credential_id], challenge=tx_challenge
    )
    assert challenge == tx_challenge and options["challenge"] == b64url(tx_challenge)
    assertion = authn.get(options)
    assert verify(wa, assertion, tx_challenge, reg) == 1


@pytest.mark.parametrize("challenge", [b"", b"short"])
def test_too_short_given_challenge_is_refused(wa, challenge):
    # py_webauthn would silently replace an empty challenge with a random one.
    with pytest.raises(ValueError):
        wa.authentication_options(allow_credential_ids=[], challenge=challenge)


def test_config_requires_origins():
    with pytest.raises(errors.ConfigError):
        WebAuthn(rp_id=RP_ID, rp_name="x", origins=[])
    # a bare string is one origin, not a sequence of one-character origins
    assert WebAuthn(rp_id=RP_ID, rp_name="x", origins=ORIGIN).origins == [ORIGIN]


# --- registration -------------------------------------------------------------------------
@pytest.mark.parametrize("attestation", ["none", "packed"])
def test_registration_roundtrip(wa, attestation):
    authn = SoftAuthenticator(attestation=attestation, transports=["usb", "nfc"])
    reg = register(wa, authn)
    assert reg == RegisteredCredential(
        credential_id=authn.credential_id,
        public_key=authn.cose_public_key,
        sign_count=0,
        aaguid="00000000-0000-0000-0000-000000000000",
        transports=["usb", "nfc"],
        backed_up=False,
        device_type="single_device",
    )


def test_registration_reports_synced_passkey(wa):
    authn = SoftAuthenticator(backup_eligible=True, backed_up=True, sign_count_start=7)
    reg = register(wa, authn)
    assert (reg.device_type, reg.backed_up, reg.sign_count) == ("multi_device", True, 7)


# --- authentication -----------------------------------------------------------------------
def test_authentication_roundtrip_counter_grows(wa):
    authn = SoftAuthenticator(counter_step=3)
    reg = register(wa, authn)
    first = authenticate(wa, authn, reg, stored=reg.sign_count)
    second = authenticate(wa, authn, reg, stored=first)
    assert (first, second) == (3, 6)


def test_authenticator_without_counter_is_accepted(wa):
    authn = SoftAuthenticator(counter_step=0)  # e.g. synced passkeys always report 0
    reg = register(wa, authn)
    assert authenticate(wa, authn, reg, stored=0) == 0
    assert authenticate(wa, authn, reg, stored=0) == 0


@pytest.mark.parametrize(
    ("stored", "rewind_to", "step"),
    [
        (1, 0, 1),  # replayed / cloned: same value again
        (10, 3, 1),  # went backwards
        (5, 0, 0),  # counter that had been counting now reports 0
    ],
)
def test_counter_regression(wa, stored, rewind_to, step):
    authn = SoftAuthenticator(counter_step=step)
    reg = register(wa, authn)
    authn.sign_count = rewind_to
    with pytest.raises(errors.SignCountRegression):
        authenticate(wa, authn, reg, stored=stored)


def test_forged_assertion_is_not_reported_as_clone(wa):
    # The counter rule may only fire on a genuine signature: otherwise anyone could make
    # a victim's credential look cloned.
    authn = SoftAuthenticator()
    reg = register(wa, authn)
    authn.tamper_signature = True
    with pytest.raises(errors.InvalidFactor) as exc_info:
        authenticate(wa, authn, reg, stored=100)
    assert type(exc_info.value) is errors.InvalidFactor


def test_assertion_signed_by_another_credential(wa):
    victim, attacker = SoftAuthenticator(), SoftAuthenticator()
    victim_reg = register(wa, victim)
    options, challenge = wa.authentication_options(allow_credential_ids=[victim_reg.credential_id])
    forged = attacker.get(options, credential_id=victim.credential_id)
    with pytest.raises(errors.InvalidFactor):
        verify(wa, forged, challenge, victim_reg)


# --- bad registrations --------------------------------------------------------------------
def _registration_fails(wa: WebAuthn, authn: SoftAuthenticator, *, challenge=None) -> None:
    options, expected = reg_options(wa)
    credential = authn.create(options)
    with pytest.raises(errors.InvalidFactor):
        wa.verify_registration(credential=credential, expected_challenge=challenge or expected)


def test_registration_wrong_challenge(wa):
    _registration_fails(wa, SoftAuthenticator(), challenge=os.urandom(32))


def test_registration_wrong_origin(wa):
    _registration_fails(wa, SoftAuthenticator(origin="https://evil.example"))


def test_registration_wrong_rp_id(wa):
    _registration_fails(wa, SoftAuthenticator(rp_id="evil.example"))


def test_registration_without_user_verification(wa):
    _registration_fails(wa, SoftAuthenticator(user_verified=False))


def test_registration_tampered_self_attestation(wa):
    authn = SoftAuthenticator(attestation="packed")
    authn.tamper_signature = True
    _registration_fails(wa, authn)


@pytest.mark.parametrize(
    "cose_key",
    [
        {1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32},  # point not on P-256
        {1: 1, 3: -8, -1: 6, -2: b"\x01" * 5},  # Ed25519 key of the wrong size
        {1: 2, 3: -8, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32},  # EC2 key claiming EdDSA
    ],
)
def test_registration_refuses_unusable_public_key(wa, cose_key):
    # With "none" attestation py_webauthn stores any well-formed COSE key; we must not.
    class BadKey(SoftAuthenticator):
        cose_public_key = cbor2.dumps(cose_key)

    _registration_fails(wa, BadKey())


# --- bad assertions -----------------------------------------------------------------------
@pytest.fixture
def registered(wa):
    authn = SoftAuthenticator()
    return authn, register(wa, authn)


def _authentication_fails(wa, authn, reg, *, challenge: bytes | None = None) -> None:
    options, expected = wa.authentication_options(allow_credential_ids=[reg.credential_id])
    credential = authn.get(options)
    with pytest.raises(errors.InvalidFactor):
        verify(wa, credential, challenge or expected, reg, reg.sign_count)


def test_authentication_wrong_challenge(wa, registered):
    _authentication_fails(wa, *registered, challenge=os.urandom(32))


def test_authentication_wrong_origin(wa, registered):
    registered[0].origin = "https://evil.example"
    _authentication_fails(wa, *registered)


def test_authentication_wrong_rp_id(wa, registered):
    registered[0].rp_id = "evil.example"
    _authentication_fails(wa, *registered)


def test_authentication_without_user_verification(wa, registered):
    registered[0].user_verified = False
    _authentication_fails(wa, *registered)


def test_authentication_tampered_signature(wa, registered):
    registered[0].tamper_signature = True
    _authentication_fails(wa, *registered)


def test_second_configured_origin_is_accepted(wa):
    authn = SoftAuthenticator(origin=SECOND_ORIGIN)
    reg = register(wa, authn)
    assert authenticate(wa, authn, reg, stored=0) == 1
    only_first = WebAuthn(rp_id=RP_ID, rp_name="x", origins=[ORIGIN])
    with pytest.raises(errors.InvalidFactor):
        authenticate(only_first, authn, reg, stored=1)


# --- garbage ------------------------------------------------------------------------------
def _mutations(valid: dict) -> list:
    """Malformed variants of a valid PublicKeyCredential JSON."""
    resp = valid["response"]
    out: list = [None, b"{}", 42, [], "", "not json", "[]", "null", "{}", "[" * 100_000, {"id": 1}]
    out.append({k: v for k, v in valid.items() if k != "response"})
    out.append({**valid, "type": "password"})
    out.append({**valid, "rawId": "!!!", "id": "!!!"})
    out.append({**valid, "rawId": "A"})  # bad base64 length
    signed_fields = {"clientDataJSON", "attestationObject", "authenticatorData", "signature"}
    for field in signed_fields & resp.keys():  # transports / userHandle are not verified
        out.append({**valid, "response": {**resp, field: "%%%"}})
        out.append({**valid, "response": {**resp, field: 7}})
        raw = b64url_decode(resp[field])
        out.append({**valid, "response": {**resp, field: b64url(raw[: len(raw) // 2])}})
    out.append({**valid, "response": {**resp, "clientDataJSON": b64url(b"\xff\xfe")}})
    out.append({**valid, "response": {**resp, "clientDataJSON": b64url(b'{"type": []}')}})
    if "attestationObject" in resp:
        att = cbor2.loads(b64url_decode(resp["attestationObject"]))
        for bad in ([], {"fmt": "none"}, {**att, "authData": b"\x00" * 36}, {**att, "fmt": 3},
                    {**att, "attStmt": {"alg": "x"}}, {**att, "fmt": "tpm", "attStmt": {}}):
            bad_att = b64url(cbor2.dumps(bad))
            out.append({**valid, "response": {**resp, "attestationObject": bad_att}})
    return out


def test_garbage_registration_is_invalid_factor(wa):
    options, challenge = reg_options(wa)
    for bad in _mutations(SoftAuthenticator().create(options)):
        with pytest.raises(errors.InvalidFactor):
            wa.verify_registration(credential=bad, expected_challenge=challenge)


def test_garbage_assertion_is_invalid_factor(wa, registered):
    authn, reg = registered
    options, challenge = wa.authentication_options(allow_credential_ids=[reg.credential_id])
    for bad in _mutations(authn.get(options)):
        with pytest.raises(errors.InvalidFactor):
            verify(wa, bad, challenge, reg)


def test_fuzzed_binary_fields_only_raise_invalid_factor(wa, registered):
    """Random byte flips in the binary fields: success or InvalidFactor, never a library error."""
    authn, reg = registered
    rng = random.Random(1234)
    r_options, r_challenge = reg_options(wa)
    a_options, a_challenge = wa.authentication_options(allow_credential_ids=[reg.credential_id])
    cases = [
        (
            SoftAuthenticator(attestation="packed").create(r_options),
            "attestationObject",
            lambda c: wa.verify_registration(credential=c, expected_challenge=r_challenge),
        ),
        (authn.get(a_options), "authenticatorData", lambda c: verify(wa, c, a_challenge, reg)),
    ]
    for valid, field, check in cases:
        raw = b64url_decode(valid["response"][field])
        for _ in range(300):
            data = bytearray(raw)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            try:
                check({**valid, "response": {**valid["response"], field: b64url(bytes(data))}})
            except errors.InvalidFactor:
                pass


# --- credential_id ------------------------------------------------------------------------
def test_credential_id_extracts_raw_id(wa, registered):
    authn, reg = registered
    options, _ = wa.authentication_options(allow_credential_ids=[reg.credential_id])
    assertion = authn.get(options)
    assert WebAuthn.credential_id(assertion) == authn.credential_id
    assert WebAuthn.credential_id(json.dumps(assertion)) == authn.credential_id
    other = os.urandom(20)
    assert WebAuthn.credential_id(authn.get(options, credential_id=other)) == other


@pytest.mark.parametrize(
    "bad",
    [None, "", "garbage", "[]", "[" * 100_000, {}, {"rawId": 5, "id": 5}, {"rawId": "", "id": ""},
     {"rawId": "AAAA", "id": "BBBB"}, {"rawId": "AA!AA", "id": "AA!AA"}, {"rawId": "A", "id": "A"}],
)
def test_credential_id_rejects_malformed(bad):
    with pytest.raises(errors.InvalidFactor):
        WebAuthn.credential_id(bad)
