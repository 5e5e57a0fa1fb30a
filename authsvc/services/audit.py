"""The audit log: who changed what, and why (operators give a reason).

Rows form a hash chain: each row's hash covers its content and the previous row's hash, so
``verify`` finds a row that was edited, inserted or deleted afterwards. Writers serialise on
an advisory lock held to the end of their transaction (audited changes are rare and short).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from .. import errors
from ..config import os_user

GENESIS = b"\x00" * 32
MIN_REASON = 5
MAX_REASON = 500


def check_reason(reason: str | None) -> str:
    """An operator's reason, whitespace collapsed; refused unless it says something (at least
    ``MIN_REASON`` characters with a letter in them: "", "  ", "x" or "..." are refused)."""
    text = " ".join((reason or "").split())
    if len(text) < MIN_REASON or not any(ch.isalpha() for ch in text):
        raise errors.InvalidRequest(
            f"the reason must say why (at least {MIN_REASON} characters, e.g. a ticket and a few words)",
            errors=[{"field": "reason", "message": "too short"}],
        )
    if len(text) > MAX_REASON:
        raise errors.InvalidRequest(f"the reason is longer than {MAX_REASON} characters")
    return text


def _digest(prev: bytes, at: datetime, actor: str, event: str, account_id: Any, detail: Any) -> bytes:
    body = json.dumps(
        [at.astimezone(timezone.utc).isoformat(), actor, event, str(account_id) if account_id else None, detail],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(prev + body.encode()).digest()


def audit(tx: Any, actor: str, event: str, account_id: str | None, /, **detail: Any) -> None:
    """Append one row. An operator's entry (actor ``operator:<name>``, the name being what
    ``AUTHSVC_OPERATOR`` declares) also records the OS user running the command (``os_user``,
    from the process's uid), which no environment variable can change."""
    if actor.startswith("operator:"):
        detail["os_user"] = os_user()
    detail = json.loads(json.dumps(detail, default=str))
    tx.one("audit_lock")
    prev = tx.scalar("audit_last_hash")
    prev = bytes(prev) if prev is not None else GENESIS
    at = datetime.now(timezone.utc)
    tx.run(
        "audit_insert",
        at=at,
        actor=actor,
        action=event,
        account_id=account_id,
        detail=json.dumps(detail, sort_keys=True),
        prev_hash=prev,
        hash=_digest(prev, at, actor, event, account_id, detail),
    )


class AuditLog:
    def __init__(self, store: Any) -> None:
        self._store = store

    def tail(self, limit: int = 20) -> list[dict]:
        with self._store.transaction() as tx:
            return tx.all("audit_tail", limit=limit)

    def verify(self, batch: int = 1000) -> tuple[int, int | None]:
        """(rows checked, id of the first broken row or None)."""
        prev, after, checked = GENESIS, 0, 0
        while True:
            with self._store.transaction() as tx:
                rows = tx.all("audit_page", after=after, limit=batch)
            if not rows:
                return checked, None
            for r in rows:
                stored_prev = bytes(r["prev_hash"]) if r["prev_hash"] is not None else None
                expected = _digest(prev, r["at"], r["actor"], r["action"], r["account_id"], r["detail"])
                if stored_prev != prev or r["hash"] is None or bytes(r["hash"]) != expected:
                    return checked, r["id"]
                prev, after, checked = expected, r["id"], checked + 1
