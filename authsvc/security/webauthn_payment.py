"""Secure Payment Confirmation (W3C SPC): the ``PaymentRequest`` data for a payment
credential, and the check of the ``payment.get`` assertion it signs.

A credential enrolled with the ``payment`` extension (``WebAuthn.registration_options(payment=
True)``: ``{"payment": {"isPayment": true}}``, a platform authenticator, resident key and user
verification required, as browsers demand) can sign a ``payment.get`` assertion through
``PaymentRequest``. py_webauthn accepts only ``webauthn.get`` client data, so
:func:`verify_payment_authentication` runs the same steps (W3C WebAuthn 7.2, SPC 4.4) with
py_webauthn's parsers and signature check: type ``payment.get``, challenge, origin, the
``payment`` member equal to the transaction bound to the challenge, RP id hash, user present and
verified, the signature, then the counter rule (``webauthn.check_counter``).

Same policy as ``webauthn.py``, for the relying party of the :class:`WebAuthn` given: every
failure caused by the client's data raises :class:`errors.InvalidFactor` (a cloned-looking
counter its subclass :class:`errors.SignCountRegression`); no library exception leaves here.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_authenticator_data,
    verify_signature,
)
from webauthn.helpers.structs import PublicKeyCredentialType

from authsvc import errors

from .webauthn import BAD_INPUT, REJECTED, TIMEOUT_MS, Assertion, WebAuthn, as_object, check_counter

_AMOUNT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,6})?")  # a PaymentCurrencyAmount value we accept


def payment_request(
    webauthn: WebAuthn, *, credential_ids: Sequence[bytes], challenge: bytes, payee_name: str, total: dict,
    instrument: dict,
) -> dict:
    """What ``PaymentRequest`` needs for method ``secure-payment-confirmation``: the
    method data (``credentialIds``, ``challenge``, ``rpId``, ``payeeName``, ``instrument``,
    ``timeout``; binary values base64url) and the ``total`` for the request's details."""
    return {
        "credentialIds": [bytes_to_base64url(c) for c in credential_ids],
        "challenge": bytes_to_base64url(challenge),
        "rpId": webauthn.rp_id,
        "payeeName": payee_name,
        "instrument": dict(instrument),
        "total": dict(total),
        "timeout": TIMEOUT_MS,
    }


def verify_payment_authentication(
    webauthn: WebAuthn,
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
        parsed = parse_authentication_credential_json(as_object(credential))
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
        if client_data.get("origin") not in webauthn.origins:
            raise ValueError("unexpected origin")
        _check_payment(webauthn, client_data.get("payment"), expected_payment)
        auth_data = parse_authenticator_data(auth_data_bytes)
        if not secrets.compare_digest(auth_data.rp_id_hash, hashlib.sha256(webauthn.rp_id.encode()).digest()):
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
    except BAD_INPUT as exc:
        raise errors.InvalidFactor(REJECTED) from exc
    new = auth_data.sign_count
    check_counter(new, current_sign_count)
    return Assertion(
        sign_count=new,
        backup_eligible=bool(auth_data.flags.be),
        backed_up=bool(auth_data.flags.bs),
        user_verified=bool(auth_data.flags.uv),
    )


def _check_payment(webauthn: WebAuthn, payment: Any, expected: dict) -> None:
    """The client data's ``payment`` member shows exactly what was bound to the challenge:
    our RP id, one of our origins on top, the payee, the total and the instrument."""
    if not isinstance(payment, dict):
        raise TypeError("no payment member")
    if payment.get("rpId") != webauthn.rp_id or payment.get("topOrigin") not in webauthn.origins:
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
