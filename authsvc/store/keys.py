"""The ``signing_keys`` table (queries/keys.sql): ES256 keys, their private half sealed, each
published from its creation until ``publish_until``; the signing key is the newest active one
that stays published for one more access-token lifetime. Times are the database's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .base import Queries, Table


@dataclass(frozen=True, slots=True)
class PublishedKey:
    kid: str
    public_jwk: Any  # the jsonb JWK, decoded (a str from an older driver)
    created_at: datetime
    activate_at: datetime
    publish_until: datetime | None


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    activate_at: datetime
    publish_until: datetime | None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key as operators list it (``keys list``)."""

    kid: str
    created_at: datetime
    activate_at: datetime
    publish_until: datetime | None
    published: bool
    active: bool


class Keys(Table):
    queries = Queries("keys.sql")

    def lock(self) -> None:
        """Serialise key creation and withdrawal (this transaction)."""
        self._value("key_lock")

    def clock(self) -> datetime:
        now: datetime = self._value("key_clock")
        return now

    def published(self) -> list[PublishedKey]:
        return self._all(PublishedKey, "key_published")

    def signing(self, ttl: int) -> SigningKey | None:
        """The key that signs now (tokens of ``ttl`` seconds)."""
        return self._one(SigningKey, "key_signing", ttl=ttl)

    def private_key_enc(self, kid: str) -> str | None:
        row = self._one(_Private, "key_private", kid=kid)
        return None if row is None else row.private_key_enc

    def insert(self, kid: str, *, private_key_enc: str, public_jwk: str, activate_in: int) -> datetime:
        """A new key; when it activates."""
        row = self._one(_Inserted, "key_insert", kid=kid, private_key_enc=private_key_enc, public_jwk=public_jwk,
                        activate_in=activate_in)
        assert row is not None  # INSERT ... RETURNING
        return row.activate_at

    def retire_others(self, kid: str, *, activate_at: datetime, grace: int) -> None:
        """Every other key published without an end stays published ``grace`` seconds after
        ``activate_at``."""
        self._values("key_retire_others", kid=kid, activate_at=activate_at, grace=grace)

    def delete_expired(self, older_than: int) -> list[str]:
        return self._values("key_delete_expired", older_than=older_than)

    def all(self) -> list[StoredKey]:
        return self._all(StoredKey, "key_list")

    def withdraw(self, kid: str) -> bool:
        return self._value("key_withdraw", kid=kid) is not None


@dataclass(frozen=True, slots=True)
class _Inserted:
    kid: str
    created_at: datetime
    activate_at: datetime


@dataclass(frozen=True, slots=True)
class _Private:
    kid: str
    private_key_enc: str
