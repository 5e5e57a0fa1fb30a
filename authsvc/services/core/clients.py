"""API clients (payment backends): made by the CLI, secret shown once, stored hashed.

Rules:
- a client secret is 256 random bits, shown once, stored as its SHA-256; checks compare in
  constant time, and an unknown client costs the same hash and comparison as a wrong secret;
- a revoked client stops working at once in every worker and instance: a worker keeps a
  client's stored hash in memory (introspection is the hot path of every payment backend,
  and this lookup was one of its two database round trips) only while it is listening to the
  database's ``authsvc_clients`` notifications, which ``revoke_client`` sends at commit. A
  notification drops the entry; a lost listener drops the whole cache and stops its use until
  it listens again; a lookup that raced with a notification is not cached; an entry lives at
  most ``CACHE_SECONDS`` in any case. Unknown clients are never cached.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable

from ... import errors
from ...security import crypto
from ...store import Store
from ..platform.audit import audit

CHANNEL = "authsvc_clients"
CACHE_SECONDS = 300.0


class ClientService:
    def __init__(self, store: Store, *, cache: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[bytes, float]] = {}  # client id -> (secret hash, cached at)
        self._generation = 0  # bumped by every notification and listener state change
        self._listening = False
        self._listen = cache  # started by the first check (CLI processes never listen)

    # ------------------------------------------------------------------ the cache
    def _revoked(self, client_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._cache.pop(client_id, None)

    def _listener_state(self, listening: bool) -> None:
        with self._lock:
            self._generation += 1
            self._listening = listening
            self._cache.clear()

    def _stored_hash(self, client_id: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            if self._listen:
                self._listen = False
                self._store.listen(CHANNEL, self._revoked, self._listener_state)
            hit = self._cache.get(client_id) if self._listening else None
            if hit is not None and now - hit[1] < CACHE_SECONDS:
                return hit[0]
            generation = self._generation
        row = self._store.one("client_by_id", id=client_id)
        if row is None:
            return None
        stored = bytes(row["secret_hash"])
        with self._lock:
            if self._listening and generation == self._generation:
                self._cache[client_id] = (stored, now)
        return stored

    # ------------------------------------------------------------------ operations
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
        if done:
            self._revoked(client_id)  # this worker at once; the others by the notification
        return done

    def authenticate(self, client_id: str, secret: str) -> str:
        stored = self._stored_hash(client_id)
        expected = stored if stored is not None else crypto.hash_token("no such client")
        if not hmac.compare_digest(expected, crypto.hash_token(secret)) or stored is None:
            raise errors.InvalidClient("unknown client or wrong secret")
        return client_id
