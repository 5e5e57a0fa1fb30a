"""Secure Payment Confirmation (W3C SPC): what the browser shows and signs for a payment.

A ``payment.authorize`` step-up of an account with payment credentials (WebAuthn credentials
enrolled with the ``payment`` extension) offers the method ``spc``: the ``PaymentRequest`` data
of ``security.webauthn_payment.payment_request`` for the transaction bound to the challenge.
The browser itself shows the payee (``payeeName`` is the transaction's ``payee``), the total
and the instrument, and the authenticator signs client data of type ``payment.get`` whose
``payment`` member must equal that transaction (``expected_payment``); anything else is a wrong
answer.
The instrument is the operator's (``AUTHSVC_SPC_INSTRUMENT_NAME``, ``AUTHSVC_SPC_INSTRUMENT_ICON``;
by default the RP name and a small built-in card icon as a ``data:`` URL, which browsers can
show without fetching anything).
"""

from __future__ import annotations

from ...config import Settings

DEFAULT_ICON = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAANElEQVR42mP4T2PAMGrBqAVDzALV5NdUQcPYAjkq"
    "gWFswWgqGrVg1ILhYMFolTlqwQi1AADGIlaAoDSG6wAAAABJRU5ErkJggg=="
)


def instrument(settings: Settings) -> dict:
    return {"displayName": settings.spc_instrument_name, "icon": settings.spc_instrument_icon or DEFAULT_ICON}


def expected_payment(settings: Settings, canonical: dict) -> dict:
    """The payee, total and instrument an SPC assertion for this transaction must show."""
    return {
        "payeeName": canonical["payee"],
        "total": {"currency": canonical["currency"], "value": canonical["amount"]},
        "instrument": instrument(settings),
    }
