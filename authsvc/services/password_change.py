"""A forced password change (operator's ``require-password-change``), finished after login.

Login with both factors answers 403 ``password_change_required`` with a one-time
``password_change_token``; ``change`` sets the new password, clears the flag, revokes every
session and notifies the owner. No session is issued: the user logs in again.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import errors
from ..security import crypto
from ..security.passwords import PasswordPolicy
from . import messages
from .hashing import GatedHasher
from .audit import audit
from .outbox import Outbox
from .sessions import Sessions

TOKEN_TTL = 900


def check_new_password(policy: PasswordPolicy, new_password: str, *, email_normalized: str) -> str:
    """The policy check, reported against the ``new_password`` field."""
    try:
        return policy.check(new_password, email=email_normalized)
    except errors.WeakPassword as exc:
        raise errors.WeakPassword(
            exc.detail, errors=[{**e, "field": "new_password"} for e in exc.errors or []]
        ) from None


class PasswordChangeService:
    def __init__(
        self, *, store: Any, hasher: GatedHasher, policy: PasswordPolicy, sessions: Sessions, outbox: Outbox
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._policy = policy
        self._sessions = sessions
        self._outbox = outbox

    def issue(self, tx: Any, account_id: str) -> str:
        token = crypto.new_token()
        tx.run("insert_password_change_token", id=str(uuid.uuid4()), account_id=account_id,
               token_hash=crypto.hash_token(token), ttl=TOKEN_TTL)
        return token

    def change(self, token: str, new_password: str) -> None:
        with self._store.transaction() as tx:
            row = tx.one("lock_password_change_token", token_hash=crypto.hash_token(token))
        if row is None:
            raise errors.InvalidToken("unknown, used or expired password change token")
        account_id = str(row["account_id"])
        with self._store.transaction() as tx:
            account = tx.one("account_by_id", account_id=account_id)
        password = check_new_password(self._policy, new_password, email_normalized=account["email_normalized"])
        # The token proves both factors: served like a known device when hashing is saturated.
        if self._hasher.verify(account["password_hash"], password, known=True):
            raise errors.WeakPassword(
                "choose a password different from the current one",
                errors=[{"field": "new_password", "message": "must differ from the current password"}],
            )
        password_hash = self._hasher.hash(password, known=True)
        with self._store.transaction() as tx:
            if tx.one("consume_password_change_token", id=row["id"]) is None:
                raise errors.InvalidToken("unknown, used or expired password change token")
            tx.run("set_password", account_id=account_id, password_hash=password_hash)
            revoked = self._sessions.revoke_all(tx, account_id, "password_changed")
            audit(tx, "user", "password.changed", account_id, sessions=revoked)
            self._outbox.event(tx, "password.changed", {"account_id": account_id})
            locale = messages.locale_of(account)
            self._outbox.sms(tx, account["phone"], messages.sms(locale, "password_changed"))
            self._outbox.email(tx, account["email"], *messages.email(locale, "password_changed"))
        self._outbox.kick()
