"""The account as its owner sees it."""

from __future__ import annotations

from ... import errors
from ...store import Store
from ..core.contacts import mask_phone
from ..platform.audit import audit
from .factor_management import FactorService


class AccountService:
    def __init__(self, store: Store, factors: FactorService) -> None:
        self._store = store
        self._factors = factors

    def describe(self, account_id: str) -> dict:
        with self._store.transaction() as tx:
            row = tx.one("account_by_id", account_id=account_id)
        if row is None:
            raise errors.InvalidToken("unknown account")
        return {
            "account_id": str(row["id"]),
            "email": row["email"],
            "phone_masked": mask_phone(row["phone"]),
            "status": row["status"],
            "password_login": row["password_login"],
            "locale": row["locale"],
            "created_at": row["created_at"].isoformat(),
            "factors": self._factors.list(account_id),
        }

    def set_locale(self, account_id: str, locale: str) -> None:
        """The language of every later SMS, email and page for the account."""
        with self._store.transaction() as tx:
            if tx.one("set_account_locale", account_id=account_id, locale=locale) is None:
                raise errors.InvalidToken("unknown account")
            audit(tx, "user", "account.locale_changed", account_id, locale=locale)
