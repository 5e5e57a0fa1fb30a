"""Identifiers that arrive in URLs."""

from __future__ import annotations

import uuid

from ... import errors


def require_uuid(value: str, error: errors.AuthsvcError) -> str:
    """``value`` when it is a UUID; otherwise ``error`` is raised (before any database work)."""
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise error from None
    if canonical != value.lower():  # uuid.UUID also takes {...}, urn:uuid:... and no dashes
        raise error
    return value
