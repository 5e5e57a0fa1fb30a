"""API clients (payment backends): made by the CLI, secret shown once, stored hashed."""

from __future__ import annotations

import hmac
import secrets

from .. import errors
from ..security import crypto
from ..store import Store
from .audit import audit


class ClientService:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, name: str, *, operator: str, reason: str) -> tuple[str, str]:
        client_id = "cl_" + secrets.token_hex(12)
        secret = crypto.new_token()
        with self._store.transaction() as tx:
            tx.run("insert_client", id=client_id, name=name, secret_hash=crypto.hash_token(secret))
            audit(tx, f"operator:{operator}", "client.created", None, client_id=client_id, name=name, reason=reason)
        return client_id, secret

    def list(self) -> list[dict]:
        with self._store.transaction() as tx:
            return tx.all("list_clients")

    def revoke(self, client_id: str, *, operator: str, reason: str) -> bool:
        with self._store.transaction() as tx:
            done = tx.one("revoke_client", id=client_id) is not None
            if done:
                audit(tx, f"operator:{operator}", "client.revoked", None, client_id=client_id, reason=reason)
        return done

    def authenticate(self, client_id: str, secret: str) -> str:
        row = self._store.one("client_by_id", id=client_id)
        expected = bytes(row["secret_hash"]) if row else crypto.hash_token("no such client")
        if not hmac.compare_digest(expected, crypto.hash_token(secret)) or row is None:
            raise errors.InvalidClient("unknown client or wrong secret")
        return client_id
