"""Incident response on one account, for operators (the ``authsvc accounts`` commands).

Every change is audited with the operator and the reason, and the owner is notified.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ... import errors
from ...store import Store, Tx
from ..core import contacts
from ..core.devices import KnownDevices
from ..core.sessions import Sessions
from ..core.subjects import mask_email
from ..platform import messages
from ..platform.audit import audit
from ..platform.outbox import Outbox
from .password_change import end_old_proofs, lock_credentials


class AccountAdmin:
    def __init__(self, *, store: Store, sessions: Sessions, outbox: Outbox, devices: KnownDevices) -> None:
        self._store = store
        self._sessions = sessions
        self._outbox = outbox
        self._devices = devices

    def _find(self, tx: Tx, ref: str) -> dict:
        try:
            _, normalized = contacts.normalize_email(ref)
        except errors.InvalidRequest:
            normalized = None
        row = tx.one("account_for_operator", ref=ref, email_normalized=normalized)
        if row is None:
            raise errors.NotFound(f"no account {ref!r}")
        return row

    def show(self, ref: str) -> dict:
        with self._store.transaction() as tx:
            row = self._find(tx, ref)
            factors = tx.all("factors_of_account", account_id=row["id"])
        return {
            "account_id": str(row["id"]),
            "email": row["email"],
            "phone": contacts.mask_phone(row["phone"]),
            "status": row["status"],
            "password_change_required": row["password_change_required"],
            "reset_required": row["reset_required"],
            "locked_until": row["locked_until"].isoformat() if row["locked_until"] else None,
            "live_sessions": row["live_sessions"],
            "factors": [f"{f['type']}:{f['name']}" for f in factors],
            "created_at": row["created_at"].isoformat(),
        }

    def _change(
        self, ref: str, event: str, operator: str, reason: str,
        apply: Callable[[Tx, str], dict | None], notice: str | None,
    ) -> str:
        with self._store.transaction() as tx:
            row = self._find(tx, ref)
            account_id = str(row["id"])
            detail = apply(tx, account_id) or {}
            audit(tx, f"operator:{operator}", event, account_id, reason=reason, **detail)
            if notice:  # a key of the message catalogue
                locale = messages.locale_of(row)
                self._outbox.sms(tx, row["phone"], messages.sms(locale, notice))
                self._outbox.email(tx, row["email"], *messages.email(locale, notice))
        self._outbox.kick()
        return account_id

    def freeze(self, ref: str, *, operator: str, reason: str) -> str:
        def apply(tx: Tx, account_id: str) -> dict:
            tx.one("freeze_account", account_id=account_id)
            self._outbox.event(tx, "account.frozen", {"account_id": account_id, "reason": "operator"})
            return {"sessions": self._sessions.revoke_all(tx, account_id, "frozen"),
                    "devices": self._devices.revoke_all(tx, account_id, "frozen")}

        return self._change(ref, "account.frozen", operator, reason, apply,
                            "operator_frozen")

    def unfreeze(self, ref: str, *, operator: str, reason: str, keep_password: bool = False) -> str:
        """Make a frozen account active again. A freeze usually means someone else had the
        password and a factor: unless the operator explicitly keeps the password
        (``keep_password``, audited), the way back in is a password reset, which also needs the
        SMS code to the verified phone (sign-in answers 403 ``password_reset_required``); every
        pending proof (mfa_token, password change token, step-up challenge, reset) dies."""
        def apply(tx: Tx, account_id: str) -> dict:
            if not keep_password:
                lock_credentials(tx, account_id)
                ended = end_old_proofs(tx, account_id)
            if tx.one("unfreeze_account", account_id=account_id) is None:
                raise errors.Conflict("the account is not frozen")
            if keep_password:
                return {"password_reset_required": False, "keep_password": True}
            tx.run("require_password_reset", account_id=account_id)
            return {"password_reset_required": True, "keep_password": False, "ended": ended}

        return self._change(ref, "account.unfrozen", operator, reason, apply,
                            "operator_unfrozen" if keep_password else "operator_unfrozen_reset")

    def revoke_sessions(self, ref: str, *, operator: str, reason: str) -> str:
        return self._change(
            ref, "sessions.revoked", operator, reason,
            lambda tx, account_id: {"sessions": self._sessions.revoke_all(tx, account_id, "operator"),
                                    "devices": self._devices.revoke_all(tx, account_id, "operator")},
            None,
        )

    def require_password_change(self, ref: str, *, operator: str, reason: str) -> str:
        def apply(tx: Tx, account_id: str) -> dict:
            tx.run("require_password_change", account_id=account_id)
            return {"sessions": self._sessions.revoke_all(tx, account_id, "password_change_required"),
                    "devices": self._devices.revoke_all(tx, account_id, "password_change_required")}

        return self._change(ref, "password.change_required", operator, reason, apply,
                            "operator_password_change")

    def locked(self, *, limit: int = 100) -> list[dict]:
        """Accounts whose second-factor lock holds unknown devices now."""
        with self._store.transaction() as tx:
            rows = tx.all("locked_accounts", limit=limit)
        return [{"account_id": str(r["id"]), "email": mask_email(r["email"]), "lock_count": r["lock_count"],
                 "seconds_left": r["seconds_left"]} for r in rows]

    def lift_lock(self, ref: str, *, operator: str, reason: str) -> str:
        """End the account's second-factor lock for unknown devices and its escalation."""
        def apply(tx: Tx, account_id: str) -> dict:
            row = tx.one("lift_account_lock", account_id=account_id)
            return {"was_locked": bool(row and row["was_locked"])}

        return self._change(ref, "login.lock_lifted", operator, reason, apply, None)

    def reset_factors(self, ref: str, *, operator: str, reason: str) -> str:
        """Remove every second factor and recovery code; the next login takes the SMS path to
        enroll a new one (to the verified phone only). Password sign-in is turned back on: an
        account that had turned it off (passkey only) would otherwise have no way in left."""
        def apply(tx: Tx, account_id: str) -> dict:
            removed = tx.all("delete_factors_of_account", account_id=account_id)
            tx.run("delete_recovery_codes", account_id=account_id)
            for f in removed:
                self._outbox.event(tx, "factor.removed", {"account_id": account_id, "factor_id": str(f["id"])})
            was_off = tx.scalar("password_login_of", account_id=account_id) is False
            if was_off:
                tx.one("set_password_login", account_id=account_id, enabled=True)
            return {"factors": len(removed), "sessions": self._sessions.revoke_all(tx, account_id, "factors_reset"),
                    "password_login_restored": was_off}

        return self._change(ref, "factors.reset", operator, reason, apply,
                            "operator_factors_reset")


class Incidents:
    """Fleet-wide incident response, in batches, resumable after any interruption."""

    KIND = "require-password-change"

    def __init__(self, *, store: Store, sessions: Sessions, outbox: Outbox, devices: KnownDevices) -> None:
        self._store = store
        self._sessions = sessions
        self._outbox = outbox
        self._devices = devices

    def require_password_change_all(
        self, *, operator: str, reason: str, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> tuple[str, int, bool]:
        """Force a new password on every account that existed when the incident began.

        An unfinished run is resumed from its cursor (each batch commits with the cursor), so a
        crash or Ctrl+C loses nothing and does no account twice. Returns (incident id,
        accounts done in total, resumed?).
        """
        with self._store.transaction() as tx:
            incident = tx.one("open_incident", kind=self.KIND)
            resumed = incident is not None
            if incident is None:
                incident = tx.one("insert_incident", id=str(uuid.uuid4()), kind=self.KIND,
                                  reason=reason, operator=operator)
                assert incident is not None  # INSERT ... RETURNING
                audit(tx, f"operator:{operator}", "incident.started", None, incident=str(incident["id"]),
                      kind=self.KIND, reason=reason)
        incident_id = str(incident["id"])
        while True:
            with self._store.transaction() as tx:
                current = tx.one("lock_incident", id=incident_id)
                assert current is not None  # incidents are never deleted
                rows = tx.all("require_password_change_batch", cursor=current["cursor"],
                              started_at=current["started_at"], limit=batch_size)
                if not rows:
                    total = tx.scalar("finish_incident", id=incident_id)
                    audit(tx, f"operator:{operator}", "incident.finished", None, incident=incident_id, accounts=total)
                    break
                for r in rows:
                    account_id = str(r["id"])
                    self._sessions.revoke_all(tx, account_id, "incident")
                    self._devices.revoke_all(tx, account_id, "incident")  # no device stays known
                    self._outbox.email(tx, r["email"], *messages.email(messages.locale_of(r),
                                                                       "incident_password_change"))
                # RETURNING has no order: the cursor is the highest id of the batch
                tx.run("advance_incident", id=incident_id, cursor=max(r["id"] for r in rows), n=len(rows))
                audit(tx, f"operator:{operator}", "incident.batch", None, incident=incident_id, accounts=len(rows),
                      reason=reason)
            self._outbox.kick()
            if on_batch:
                on_batch(len(rows))
        return incident_id, total, resumed
