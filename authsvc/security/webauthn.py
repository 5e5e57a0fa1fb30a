"""Thin wrapper over py_webauthn: fixed policy, and library errors turned into ours.

Policy: user verification is required for registration and authentication, attestation is
``none`` (we do not check authenticator provenance), ES256/EdDSA/RS256 keys, and the
signature counter must grow whenever the authenticator keeps one. ``user_handle`` reads an
assertion's userHandle so that the caller can check it is the credential owner's (W3C
WebAuthn section 7.2, step 6; py_webauthn leaves that to the relying party).

Secure Payment Confirmation (W3C SPC): a credential enrolled with the ``payment`` extension
(``registration_options(payment=True)``: ``{"payment": {"isPayment": true}}``, a platform
authenticator, resident key and user verification required, as browsers demand) can sign a
``payment.get`` assertion through ``PaymentRequest``. py_webauthn accepts only
``webauthn.get`` client data, so ``verify_payment_authentication`` runs the same steps (W3C
WebAuthn 7.2, SPC 4.4) with py_webauthn's parsers and signature check: type ``payment.get``,
challenge, origin, the ``payment`` member equal to the transaction bound to the challenge,
RP id hash, user present and verified, the signature, then the counter rule above.

Every failure caused by the client's data raises :class:`errors.InvalidFactor` (a cloned-looking
counter raises its subclass :class:`errors.SignCountRegression`); no py_webauthn, cbor, json,
base64 or cryptography exception leaves this module.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
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
    parse_authenticator_data,
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
    PublicKeyCredentialType,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authsvc import errors

_REJECTED = "WebAuthn assertion rejected"
_AMOUNT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,6})?")  # a PaymentCurrencyAmount value we accept
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
_BAD_INPUT = (
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
            parsed = parse_registration_credential_json(_as_object(credential))
            verified = pywebauthn.verify_registration_response(
                credential=parsed,
                expected_challenge=expected_challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                require_user_verification=True,
                supported_pub_key_algs=SUPPORTED_ALGS,
            )
            _check_usable(verified.credential_public_key)
        except _BAD_INPUT as exc:
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
                credential=parse_authentication_credential_json(_as_object(credential)),
                expected_challenge=expected_challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=public_key,
                # 0 disables py_webauthn's own counter check, which runs *before* the signature
                # check; ours below runs after it, so only a genuine signature can report a clone.
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except _BAD_INPUT as exc:
            raise errors.InvalidFactor(_REJECTED) from exc
        new = verified.new_sign_count
        if (new or current_sign_count) and new <= current_sign_count:
            # Same client-facing detail as any rejection, and no counter values: telling the
            # holder of a cloned key where the counter stands would help them skip ahead.
            raise errors.SignCountRegression(_REJECTED)
        return Assertion(
            sign_count=new,
            backup_eligible=verified.credential_device_type.value == "multi_device",
            backed_up=bool(verified.credential_backed_up),
            user_verified=bool(verified.user_verified),
        )

    def payment_request(
        self, *, credential_ids: Sequence[bytes], challenge: bytes, payee_name: str, total: dict, instrument: dict
    ) -> dict:
        """What ``PaymentRequest`` needs for method ``secure-payment-confirmation``: the
        method data (``credentialIds``, ``challenge``, ``rpId``, ``payeeName``, ``instrument``,
        ``timeout``; binary values base64url) and the ``total`` for the request's details."""
        return {
            "credentialIds": [bytes_to_base64url(c) for c in credential_ids],
            "challenge": bytes_to_base64url(challenge),
            "rpId": self.rp_id,
            "payeeName": payee_name,
            "instrument": dict(instrument),
            "total": dict(total),
            "timeout": TIMEOUT_MS,
        }

    def verify_payment_authentication(
        self,
        *,
        credential: dict | str,
        expected_challenge: bytes,
        expected_payment: dict,
        public_key: bytes,
        current_sign_count: int,
    ) -> Assertion:
        """Verify an SPC assertion (client data ``payment.get``) for the stored credential;
        ``expected_payment`` is ``{payeeName, total: {currency, value}, instrument:
        {displayName, icon}}`` as offered. Returns its new sign count and flags."""
        try:
            parsed = parse_authentication_credential_json(_as_object(credential))
            if bytes_to_base64url(parsed.raw_id) != parsed.id or parsed.type != PublicKeyCredentialType.PUBLIC_KEY:
                raise ValueError("id and rawId differ, or not a public-key credential")
            client_data_bytes = bytes(parsed.response.client_data_json)
            auth_data_bytes = bytes(parsed.response.authenticator_data)
            client_data = json.loads(client_data_bytes)
            if not isinstance(client_data, dict) or client_data.get("type") != "payment.get":
                raise ValueError("client data type is not payment.get")
            challenge = client_data.get("challenge")
            if not isinstance(challenge, str) or not secrets.compare_digest(
                base64url_to_bytes(challenge), expected_challenge
            ):
                raise ValueError("not the challenge offered")
            if client_data.get("origin") not in self.origins:
                raise ValueError("unexpected origin")
            self._check_payment(client_data.get("payment"), expected_payment)
            auth_data = parse_authenticator_data(auth_data_bytes)
            if not secrets.compare_digest(auth_data.rp_id_hash, hashlib.sha256(self.rp_id.encode()).digest()):
                raise ValueError("unexpected RP ID hash")
            if not (auth_data.flags.up and auth_data.flags.uv):
                raise ValueError("user not present and verified")
            decoded = decode_credential_public_key(public_key)
            verify_signature(
                public_key=decoded_public_key_to_cryptography(decoded),
                signature_alg=decoded.alg,
                signature=bytes(parsed.response.signature),
                data=auth_data_bytes + hashlib.sha256(client_data_bytes).digest(),
            )
        except _BAD_INPUT as exc:
            raise errors.InvalidFactor(_REJECTED) from exc
        new = auth_data.sign_count
        if (new or current_sign_count) and new <= current_sign_count:
            raise errors.SignCountRegression(_REJECTED)
        return Assertion(
            sign_count=new,
            backup_eligible=bool(auth_data.flags.be),
            backed_up=bool(auth_data.flags.bs),
            user_verified=bool(auth_data.flags.uv),
        )

    def _check_payment(self, payment: Any, expected: dict) -> None:
        """The client data's ``payment`` member shows exactly what was bound to the challenge:
        our RP id, one of our origins on top, the payee, the total and the instrument."""
        if not isinstance(payment, dict):
            raise TypeError("no payment member")
        if payment.get("rpId") != self.rp_id or payment.get("topOrigin") not in self.origins:
            raise ValueError("payment rpId or topOrigin differ")
        if payment.get("payeeName") != expected["payeeName"] or payment.get("payeeOrigin") is not None:
            raise ValueError("payee differs")
        total = payment.get("total")
        if not isinstance(total, dict) or set(total) != {"currency", "value"}:
            raise ValueError("total malformed")
        value = total["value"]
        if (
            total["currency"] != expected["total"]["currency"]
            or not isinstance(value, str)
            or not _AMOUNT.fullmatch(value)
            or Decimal(value) != Decimal(expected["total"]["value"])
        ):
            raise ValueError("total differs")
        instrument = payment.get("instrument")
        if not isinstance(instrument, dict) or not set(instrument) <= {"displayName", "icon", "iconMustBeShown"}:
            raise ValueError("instrument malformed")
        if (instrument.get("displayName") != expected["instrument"]["displayName"]
                or instrument.get("icon") != expected["instrument"]["icon"]):
            raise ValueError("instrument differs")

    @staticmethod
    def credential_id(credential: dict | str) -> bytes:
        """The raw credential id (rawId) a PublicKeyCredential JSON claims to be."""
        try:
            data = _as_object(credential)
            raw_id_b64 = data["rawId"]
            if not isinstance(raw_id_b64, str) or raw_id_b64 != data.get("id"):
                raise ValueError("id and rawId differ")
            raw_id = base64url_to_bytes(raw_id_b64)
            # base64url_to_bytes skips stray characters: insist on the canonical encoding.
            if not raw_id or bytes_to_base64url(raw_id) != raw_id_b64:
                raise ValueError("rawId is not canonical base64url")
        except _BAD_INPUT as exc:
            raise errors.InvalidFactor("Malformed WebAuthn credential") from exc
        return raw_id


    @staticmethod
    def user_handle(credential: dict | str) -> bytes | None:
        """The ``response.userHandle`` an assertion carries (None when absent or empty)."""
        try:
            response = _as_object(credential).get("response")
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
        except _BAD_INPUT as exc:
            raise errors.InvalidFactor("Malformed WebAuthn credential") from exc
        return handle


def decoy_public_key() -> bytes:
    """A COSE ES256 key nobody holds the private half of: verifying an assertion against it
    costs what a real check costs and always fails (used where no credential matched, so that
    an unknown credential and a bad signature take the same work)."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


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


def _as_object(credential: Any) -> dict:
    """The credential as a dict; invalid input raises ValueError/TypeError (-> InvalidFactor)."""
    if isinstance(credential, str):
        try:
            credential = json.loads(credential)
        except RecursionError as exc:  # "[[[[..." from a client; only this call is guarded
            raise ValueError("credential JSON is nested too deeply") from exc
    if not isinstance(credential, dict):
        raise TypeError("credential must be a JSON object")
    return credential
