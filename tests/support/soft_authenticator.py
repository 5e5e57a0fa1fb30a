"""A software WebAuthn authenticator (plus the browser's part) for tests.

It builds real attestation and assertion objects (CBOR, ES256 signatures) that py_webauthn
verifies for real. One instance holds one credential; its key and id exist from construction.
Every knob is a plain attribute and can be changed between calls to produce bad inputs:
``origin`` (clientDataJSON origin), ``rp_id`` (hashed into authenticatorData), ``user_verified``
(UV flag), ``tamper_signature``, ``sign_count`` (e.g. rewind it to simulate a clone).

``pay`` plays the browser's part of Secure Payment Confirmation: what
``PaymentRequest.show()`` returns for ``secure-payment-confirmation`` (client data of type
``payment.get`` with a ``payment`` member, signed like any assertion).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Sequence

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_BS, FLAG_AT = 0x01, 0x04, 0x08, 0x10, 0x40
ES256 = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    def __init__(
        self,
        *,
        rp_id: str = "localhost",
        origin: str = "http://localhost:8000",
        user_verified: bool = True,
        sign_count_start: int = 0,
        counter_step: int = 1,
        attestation: str = "none",  # or "packed" (self attestation)
        transports: Sequence[str] = ("internal",),
        backup_eligible: bool = False,
        backed_up: bool = False,
        aaguid: bytes = bytes(16),
    ) -> None:
        if attestation not in ("none", "packed"):
            raise ValueError("attestation must be 'none' or 'packed'")
        self.rp_id = rp_id
        self.origin = origin
        self.user_verified = user_verified
        self.sign_count = sign_count_start
        self.counter_step = counter_step
        self.attestation = attestation
        self.transports = list(transports)
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.aaguid = aaguid
        self.tamper_signature = False
        self.credential_id = os.urandom(32)
        self.user_handle: bytes | None = None
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def cose_public_key(self) -> bytes:
        n = self._key.public_key().public_numbers()
        x, y = n.x.to_bytes(32, "big"), n.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: x, -3: y})  # kty EC2, alg, crv P-256

    # --- navigator.credentials.create() ---------------------------------------------------
    def create(self, options: dict) -> dict:
        excluded = {c["id"] for c in options.get("excludeCredentials", [])}
        if b64url(self.credential_id) in excluded:
            raise LookupError("InvalidStateError: credential already registered with this RP")
        self.user_handle = b64url_decode(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"])
        attested = (
            self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self.cose_public_key
        )
        auth_data = self._auth_data(FLAG_AT) + attested
        att_stmt: dict = {}
        if self.attestation == "packed":
            att_stmt = {"alg": ES256, "sig": self._sign(auth_data, client_data)}
        attestation_object = cbor2.dumps(
            {"fmt": self.attestation, "attStmt": att_stmt, "authData": auth_data}
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": list(self.transports),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    # --- navigator.credentials.get() ------------------------------------------------------
    def get(self, options: dict, *, credential_id: bytes | None = None) -> dict:
        """An assertion; ``credential_id`` claims another id (the signature stays ours)."""
        if credential_id is None:
            allowed = {c["id"] for c in options.get("allowCredentials", [])}
            if allowed and b64url(self.credential_id) not in allowed:
                raise LookupError("NotAllowedError: this credential is not in allowCredentials")
            credential_id = self.credential_id
        self.sign_count += self.counter_step
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(0)
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(self._sign(auth_data, client_data)),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    # --- PaymentRequest.show() for secure-payment-confirmation ------------------------------
    def pay(self, spc: dict, *, type_: str = "payment.get", top_origin: str | None = None,
            drop: Sequence[str] = (), **changes: object) -> dict:
        """An SPC assertion for the server's ``spc`` request: the client data's ``payment``
        member shows rpId, topOrigin, payeeName, total and instrument as offered, unless
        ``changes`` replace some (or ``drop`` leaves some out) to forge what was shown."""
        if b64url(self.credential_id) not in spc["credentialIds"]:
            raise LookupError("NotAllowedError: this credential is not in credentialIds")
        payment = {
            "rpId": spc["rpId"],
            "topOrigin": top_origin or self.origin,
            "payeeName": spc["payeeName"],
            "total": spc["total"],
            "instrument": spc["instrument"],
            **changes,
        }
        for key in drop:
            payment.pop(key, None)
        self.sign_count += self.counter_step
        client_data = self._client_data(type_, spc["challenge"], payment=payment)
        auth_data = self._auth_data(0)
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(self._sign(auth_data, client_data)),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    # --- internals ------------------------------------------------------------------------
    def _client_data(self, type_: str, challenge_b64: str, **extra: object) -> bytes:
        data = {"type": type_, "challenge": challenge_b64, "origin": self.origin}
        return json.dumps({**data, "crossOrigin": False, **extra}, separators=(",", ":")).encode()

    def _auth_data(self, extra_flags: int) -> bytes:
        flags = FLAG_UP | extra_flags
        flags |= FLAG_UV if self.user_verified else 0
        flags |= FLAG_BE if self.backup_eligible else 0
        flags |= FLAG_BS if self.backed_up else 0
        rp_id_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", self.sign_count)

    def _sign(self, auth_data: bytes, client_data: bytes) -> bytes:
        signed = auth_data + hashlib.sha256(client_data).digest()
        if self.tamper_signature:  # a well-formed DER signature over other bytes
            signed += b"tampered"
        return self._key.sign(signed, ec.ECDSA(hashes.SHA256()))
