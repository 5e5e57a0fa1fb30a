"""The audit log: who changed what, and why (operators give a reason)."""

from __future__ import annotations

import json
from typing import Any


def audit(tx: Any, actor: str, event: str, account_id: str | None, /, **detail: Any) -> None:
    tx.run(
        "audit_insert",
        actor=actor,
        action=event,
        account_id=account_id,
        detail=json.dumps(detail, default=str, sort_keys=True),
    )
