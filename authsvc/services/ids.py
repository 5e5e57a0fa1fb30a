"""Identifiers that arrive in URLs."""

from __future__ import annotations

import uuid

from .. import errors


def require_uuid(value: str, error: errors.AuthsvcError) -> str:
    """``value`` when it is a UUID; otherwise ``error`` is raised (before any database work)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise error from None
    return value
