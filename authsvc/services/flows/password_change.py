"""A forced password change (operator's ``require-password-change``), finished after login.

Login with both factors answers 403 ``password_change_required`` with a one-time
``password_change_token``; ``change`` sets the new password (which must differ from the
current one), clears the flag, revokes every session, kills every pending mfa_token, step-up
challenge and reset of the account, and notifies the owner. No session is issued: the user
logs in again.
"""

from __future__ import annotations

import uuid

from ... import errors
from ...policy import ONE_TIME
from ...security import crypto
from ...security.passwords import PasswordPolicy
from ...store import Store, Tx
from ..core.sessions import Sessions
from ..platform import messages
from ..platform.audit import audit
from ..platform.hashing import GatedHasher
from ..platform.outbox import Outbox


def check_new_password(policy: PasswordPolicy, new_password: str, *, email_normalized: str) -> str:
    """The policy check, reported against the ``new_password`` field."""
    try:
        return policy.check(new_password, email=email_normalized)
    except errors.WeakPassword as exc:
        raise errors.WeakPassword(
            exc.detail, errors=[{**e, "field": "new_password"} for e in exc.errors or []]
        ) from None


def refuse_current_password(hasher: GatedHasher, stored_hash: str, password: str) -> None:
    """A new password must differ from the current one (400 ``weak_password``)."""
    # Callers hold a token that proves both factors: served like a known device when saturated.
    if hasher.verify(stored_hash, password, known=True):
        raise errors.WeakPassword(
            "choose a password different from the current one",
            errors=[{"field": "new_password", "message": "must differ from the current password"}],
        )


def lock_credentials(tx: Tx, account_id: str) -> None:
    """First thing in a transaction that sets a new password: two of them for one account
    (two resets completing at once) queue here instead of locking each other's rows."""
    tx.one("lock_credentials", account_id=account_id)


def end_old_proofs(tx: Tx, account_id: str) -> dict:
    """Inside the transaction that sets a new password (after ``lock_credentials``), before the
    account row is touched: every pending mfa_token, step-up challenge, reset and password
    change token of the account dies (the caller's own reset or token is consumed already).
    Returns counts for the audit."""
    return dict(tx.one("kill_pending_proofs", account_id=account_id) or {})


class PasswordChangeService:
    def __init__(
        self, *, store: Store, hasher: GatedHasher, policy: PasswordPolicy, sessions: Sessions, outbox: Outbox
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._policy = policy
        self._sessions = sessions
        self._outbox = outbox

    def issue(self, tx: Tx, account_id: str) -> str:
        token = crypto.new_token()
        tx.run("insert_password_change_token", id=str(uuid.uuid4()), account_id=account_id,
               token_hash=crypto.hash_token(token), ttl=ONE_TIME.password_change_token_ttl)
        return token

    def change(self, token: str, new_password: str) -> None:
        with self._store.transaction() as tx:
            row = tx.one("lock_password_change_token", token_hash=crypto.hash_token(token))
        if row is None:
            raise errors.InvalidToken("unknown, used or expired password change token")
        account_id = str(row["account_id"])
        with self._store.transaction() as tx:
            account = tx.one("account_by_id", account_id=account_id)
        assert account is not None  # the token's account (a foreign key)
        password = check_new_password(self._policy, new_password, email_normalized=account["email_normalized"])
        refuse_current_password(self._hasher, account["password_hash"], password)
        password_hash = self._hasher.hash(password, known=True)
        with self._store.transaction() as tx:
            lock_credentials(tx, account_id)
            if tx.one("consume_password_change_token", id=row["id"]) is None:
                raise errors.InvalidToken("unknown, used or expired password change token")
            ended = end_old_proofs(tx, account_id)
            tx.run("set_password", account_id=account_id, password_hash=password_hash)
            revoked = self._sessions.revoke_all(tx, account_id, "password_changed")
            audit(tx, "user", "password.changed", account_id, sessions=revoked, ended=ended)
            self._outbox.event(tx, "password.changed", {"account_id": account_id})
            locale = messages.locale_of(account)
            self._outbox.sms(tx, account["phone"], messages.sms(locale, "password_changed"))
            self._outbox.email(tx, account["email"], *messages.email(locale, "password_changed"))
        self._outbox.kick()
