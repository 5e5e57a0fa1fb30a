"""Normalising the identifiers users type: emails and phone numbers."""

from __future__ import annotations

import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from ... import errors
from ...security import confusables


def normalize_email(raw: str) -> tuple[str, str]:
    """Return ``(email as given but trimmed, normalised form)``.

    The normalised form (NFKC, case-folded, trimmed) is what uniqueness is checked on, so two
    accounts whose emails only differ by case or compatibility characters cannot exist; its
    ``email_skeleton`` is unique too, so neither can two look-alike ones.
    """
    email = unicodedata.normalize("NFKC", raw).strip()
    try:
        validate_email(email, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        raise errors.InvalidRequest(
            "email is not a valid address",
            errors=[{"field": "email", "message": "not a valid email address"}],
        ) from None
    return email, email.casefold()


def email_skeleton(email_normalized: str) -> str:
    """The confusable skeleton (Unicode TS #39) of a normalised email: an email whose
    skeleton is an existing account's is taken, like one that normalises to it ("alıce",
    "alіce" with a Cyrillic і and "alİce" are all "alice")."""
    return confusables.email_skeleton(email_normalized)


def local_part(email_normalized: str) -> str:
    return email_normalized.rpartition("@")[0]


def normalize_phone(raw: str) -> str:
    """A phone number in E.164 (``+819012345678``); anything else is a 400."""
    problem = errors.InvalidRequest(
        "phone must be an E.164 number such as +819012345678",
        errors=[{"field": "phone", "message": "not a valid E.164 phone number"}],
    )
    if not raw.startswith("+") or not raw[1:].isascii() or not raw[1:].isdigit():
        raise problem
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise problem from None
    if not phonenumbers.is_valid_number(number):
        raise problem
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if formatted != raw:
        raise problem
    return formatted


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:]
