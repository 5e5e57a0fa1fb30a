"""TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps) with replay protection.

The caller stores the step returned by :func:`verify` and passes it back as ``last_step``;
a code is then never accepted twice, nor a code from a step before the last accepted one.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import TypeGuard

import pyotp

from .. import errors

DIGITS = 6
INTERVAL = 30
_CODE_RE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A new base32 secret of 160 bits (32 base32 characters)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account_name: str, issuer: str) -> str:
    """``otpauth://totp/...`` URI for QR codes."""
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def is_well_formed(code: object) -> TypeGuard[str]:
    """Exactly six ASCII digits (no spaces, no full-width or other Unicode digits)."""
    return isinstance(code, str) and _CODE_RE.fullmatch(code) is not None


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // INTERVAL)


def verify(
    secret: str,
    code: str,
    *,
    last_step: int | None,
    now: float | None = None,
    window: int = 1,
) -> int | None:
    """Return the matched time step, or None.

    ``code`` is accepted when it equals the code of a step within ``window`` steps of now
    and that step is strictly greater than ``last_step``. Every candidate is computed and
    compared in constant time; if several steps match, the earliest acceptable one wins.
    """
    if not is_well_formed(code):
        return None
    now_step = current_step(now)
    steps = range(max(0, now_step - window), now_step + window + 1)
    expected = _codes(secret, steps)
    matched: int | None = None
    for step, candidate in zip(steps, expected, strict=True):
        equal = hmac.compare_digest(candidate.encode("ascii"), code.encode("ascii"))
        if equal and matched is None and (last_step is None or step > last_step):
            matched = step
    return matched


def _totp(secret: str) -> pyotp.TOTP:
    try:
        otp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
        otp.byte_secret()  # decodes and checks the secret (base32, at least 112 bits)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        raise errors.AuthsvcError("stored TOTP secret is unusable") from None
    return otp


def _codes(secret: str, steps: range) -> list[str]:
    otp = _totp(secret)
    return [otp.generate_otp(step) for step in steps]
