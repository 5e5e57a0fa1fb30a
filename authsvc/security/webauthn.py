"""Thin wrapper over py_webauthn: fixed policy, and library errors turned into ours.

Policy: user verification is required for registration and authentication, attestation is
``none`` (we do not check authenticator provenance), ES256/EdDSA/RS256 keys, and the
signature counter must grow whenever the authenticator keeps one. ``user_handle`` reads an
assertion's userHandle so that the caller can check it is the credential owner's (W3C
WebAuthn section 7.2, step 6; py_webauthn leaves that to the relying party).

A credential enrolled with the ``payment`` extension (``registration_options(payment=True)``)
can also sign Secure Payment Confirmation (``payment.get``) assertions: those are checked in
``webauthn_payment.py``, with this module's rules (:data:`BAD_INPUT`, :func:`as_object`,
:func:`check_counter`).

Every failure caused by the client's data raises :class:`errors.InvalidFactor` (a cloned-looking
counter raises its subclass :class:`errors.SignCountRegression`); no py_webauthn, cbor, json,
base64 or cryptography exception leaves this module.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import webauthn as pywebauthn
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
    verify_signature,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authsvc import errors

REJECTED = "WebAuthn assertion rejected"
TIMEOUT_MS = 300_000
MIN_CHALLENGE_BYTES = 16
SUPPORTED_ALGS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]

# What malformed or forged client data can make the libraries raise. binascii.Error,
# json.JSONDecodeError, UnicodeDecodeError and cbor2's CBORDecodeError are ValueErrors;
# py_webauthn wraps most CBOR/clientDataJSON errors in its own WebAuthnException family.
BAD_INPUT = (
    WebAuthnException,
    InvalidSignature,
    CryptoUnsupportedAlgorithm,
    ValueError,
    KeyError,
    TypeError,
)


@dataclass(frozen=True)
class RegisteredCredential:
    credential_id: bytes
    public_key: bytes  # COSE_Key (CBOR), as py_webauthn wants it back for verification
    sign_count: int
    aaguid: str
    transports: list[str]
    backed_up: bool
    device_type: str  # "single_device" | "multi_device"

    @property
    def backup_eligible(self) -> bool:
        """The BE flag: the credential may be synced to other devices (a syncable passkey)."""
        return self.device_type == "multi_device"


@dataclass(frozen=True)
class Assertion:
    """What a verified assertion proved: the new signature counter and its flags."""

    sign_count: int
    backup_eligible: bool  # BE: a syncable credential
    backed_up: bool  # BS: currently backed up (synced)
    user_verified: bool  # UV

    @property
    def synced(self) -> bool:
        return self.backup_eligible or self.backed_up


class WebAuthn:
    def __init__(self, *, rp_id: str, rp_name: str, origins: Sequence[str]) -> None:
        if isinstance(origins, str):  # a str is a Sequence[str] of single characters
            origins = [origins]
        if not rp_id or not rp_name or not origins or not all(origins):
            raise errors.ConfigError("WebAuthn needs an rp_id, an rp_name and at least one origin")
        self.rp_id = rp_id
        self.rp_name = rp_name
        self.origins = list(origins)

    # --- registration ---------------------------------------------------------------------
    def registration_options(
        self,
        *,
        user_id: bytes,
        user_name: str,
        user_display_name: str,
        exclude_credential_ids: Sequence[bytes] = (),
        passkey: bool = False,
        payment: bool = False,
    ) -> tuple[dict, bytes]:
        """(PublicKeyCredentialCreationOptions as a JSON-ready dict, challenge). A passkey is a
        discoverable credential: the authenticator must keep it (resident key required). A
        payment credential (Secure Payment Confirmation) carries the ``payment`` extension and
        is a discoverable credential of a platform authenticator with user verification."""
        # py_webauthn silently substitutes a random handle for an empty user_id.
        if not isinstance(user_id, bytes) or not 1 <= len(user_id) <= 64:
            raise ValueError("user_id must be 1 to 64 bytes")
        options = pywebauthn.generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_id=user_id,
            user_name=user_name,
            user_display_name=user_display_name,
            timeout=TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=(ResidentKeyRequirement.REQUIRED if passkey or payment
                              else ResidentKeyRequirement.PREFERRED),
                user_verification=UserVerificationRequirement.REQUIRED,
                authenticator_attachment=AuthenticatorAttachment.PLATFORM if payment else None,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c) for c in exclude_credential_ids
            ],
            supported_pub_key_algs=SUPPORTED_ALGS,
        )
        as_json = options_to_json_dict(options)
        if payment:
            as_json["extensions"] = {"payment": {"isPayment": True}}
        return as_json, options.challenge

    def verify_registration(
        self, *, credential: dict | str, expected_challenge: bytes
    ) -> RegisteredCredential:
        try:
            parsed = parse_registration_credential_json(as_object(credential))
            verified = pywebauthn.verify_registration_response(
                credential=parsed,
                expected_challenge=expected_challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                require_user_verification=True,
                supported_pub_key_algs=SUPPORTED_ALGS,
            )
            _check_usable(verified.credential_public_key)
        except BAD_INPUT as exc:
            raise errors.InvalidFactor("WebAuthn registration rejected") from exc
        return RegisteredCredential(
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            transports=[t.value for t in parsed.response.transports or []],
            backed_up=verified.credential_backed_up,
            device_type=verified.credential_device_type.value,
        )

    # --- authentication -------------------------------------------------------------------
    def authentication_options(
        self, *, allow_credential_ids: Sequence[bytes], challenge: bytes | None = None
    ) -> tuple[dict, bytes]:
        """PublicKeyCredentialRequestOptions dict + challenge; a given challenge is used as is."""
        # py_webauthn silently replaces an empty challenge with a random one.
        if challenge is not None and (
            not isinstance(challenge, bytes) or len(challenge) < MIN_CHALLENGE_BYTES
        ):
            raise ValueError(f"challenge must be at least {MIN_CHALLENGE_BYTES} bytes")
        options = pywebauthn.generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=TIMEOUT_MS,
            allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allow_credential_ids],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json_dict(options), options.challenge

    def verify_authentication(
        self,
        *,
        credential: dict | str,
        expected_challenge: bytes,
        public_key: bytes,
        current_sign_count: int,
    ) -> Assertion:
        """Verify an assertion for the stored credential; returns its new sign count and flags."""
        try:
            verified = pywebauthn.verify_authentication_response(
                credential=parse_authentication_credential_json(as_object(credential)),
                expected_challenge=expected_challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=public_key,
                # 0 disables py_webauthn's own counter check, which runs *before* the signature
                # check; ours below runs after it, so only a genuine signature can report a clone.
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except BAD_INPUT as exc:
            raise errors.InvalidFactor(REJECTED) from exc
        new = verified.new_sign_count
        check_counter(new, current_sign_count)
        return Assertion(
            sign_count=new,
            backup_eligible=verified.credential_device_type.value == "multi_device",
            backed_up=bool(verified.credential_backed_up),
            user_verified=bool(verified.user_verified),
        )

    @staticmethod
    def credential_id(credential: dict | str) -> bytes:
        """The raw credential id (rawId) a PublicKeyCredential JSON claims to be."""
        try:
            data = as_object(credential)
            raw_id_b64 = data["rawId"]
            if not isinstance(raw_id_b64, str) or raw_id_b64 != data.get("id"):
                raise ValueError("id and rawId differ")
            raw_id = base64url_to_bytes(raw_id_b64)
            # base64url_to_bytes skips stray characters: insist on the canonical encoding.
            if not raw_id or bytes_to_base64url(raw_id) != raw_id_b64:
                raise ValueError("rawId is not canonical base64url")
        except BAD_INPUT as exc:
            raise errors.InvalidFactor("Malformed WebAuthn credential") from exc
        return raw_id


    @staticmethod
    def user_handle(credential: dict | str) -> bytes | None:
        """The ``response.userHandle`` an assertion carries (None when absent or empty)."""
        try:
            response = as_object(credential).get("response")
            if not isinstance(response, dict):
                raise TypeError("response must be an object")
            handle_b64 = response.get("userHandle")
            if handle_b64 is None or handle_b64 == "":
                return None
            if not isinstance(handle_b64, str):
                raise TypeError("userHandle must be a string")
            handle = base64url_to_bytes(handle_b64)
            if bytes_to_base64url(handle) != handle_b64:
                raise ValueError("userHandle is not canonical base64url")
        except BAD_INPUT as exc:
            raise errors.InvalidFactor("Malformed WebAuthn credential") from exc
        return handle


def decoy_public_key() -> bytes:
    """A COSE ES256 key nobody holds the private half of: verifying an assertion against it
    costs what a real check costs and always fails (used where no credential matched, so that
    an unknown credential and a bad signature take the same work)."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


def check_counter(new: int, current: int) -> None:
    """The counter rule, after a genuine signature: it must grow whenever the authenticator
    keeps one (either value non-zero); otherwise :class:`errors.SignCountRegression`."""
    if (new or current) and new <= current:
        # Same client-facing detail as any rejection, and no counter values: telling the
        # holder of a cloned key where the counter stands would help them skip ahead.
        raise errors.SignCountRegression(REJECTED)


def handles_equal(a: bytes, b: bytes) -> bool:
    return secrets.compare_digest(a, b)


def _check_usable(cose_key: bytes) -> None:
    """Refuse a key that could never verify an assertion (bad point, wrong size, alg not
    matching the key type). Under "none" attestation py_webauthn only checks that the COSE
    key has the right fields, so this is the first time the key is loaded."""
    decoded = decode_credential_public_key(cose_key)
    key = decoded_public_key_to_cryptography(decoded)
    try:  # a usable key gets as far as rejecting the (always invalid) empty signature
        verify_signature(public_key=key, signature_alg=decoded.alg, signature=b"", data=b"")
    except InvalidSignature:
        return
    raise ValueError("an empty signature verified")  # cannot happen; fail closed anyway


def as_object(credential: Any) -> dict:
    """The credential as a dict; invalid input raises ValueError/TypeError (-> InvalidFactor)."""
    if isinstance(credential, str):
        try:
            credential = json.loads(credential)
        except RecursionError as exc:  # "[[[[..." from a client; only this call is guarded
            raise ValueError("credential JSON is nested too deeply") from exc
    if not isinstance(credential, dict):
        raise TypeError("credential must be a JSON object")
    return credential
