"""ES256 signing keys: creation, rotation, signing, verification and the published JWKS.

Rules (docs/api-guide.md, "Conventions", Tokens; table ``signing_keys``):
- the *signing* key is the most recently created key whose ``activate_at`` has come (and that
  stays published for at least one more access-token lifetime);
- *published* keys (JWKS, verification) are those whose ``publish_until`` is NULL or in the
  future: keys announced ahead of use, the signing key, and older keys whose tokens may still
  be alive;
- ``rotate`` publishes first (``activate_at`` = now + ``activate_in``), then the new key signs,
  and every older key stays published until ``new activate_at + access_token_ttl + 60 s``;
- when no key can sign (first start), one is created under a transaction-scoped advisory lock,
  so processes starting at once create exactly one;
- private halves are stored encrypted (``Cipher``, AAD ``signing-key:<kid>``) and decrypted
  only in memory.

Every process keeps the published keys in memory, and the fleet sees a change made anywhere
(README, "A fleet of replicas"):

- any change to ``signing_keys`` notifies channel ``authsvc_keys`` at commit (a trigger,
  migration 0077), and a process drops its snapshot on the notification;
- a snapshot is kept at most ``CACHE_SECONDS`` while the process listens, at most
  ``UNHEARD_SECONDS`` while it does not (listener not started, lost, or no LISTEN possible
  through a transaction pooler), and never past the next activation or expiry it knows of;
- a new key is published at least ``PUBLISH_LEAD`` seconds (more than ``UNHEARD_SECONDS``)
  before it signs, so every replica's JWKS lists a key before any replica signs with it, even
  one that missed the notification. ``keys rotate --activate-in 0`` signs after that lead.

A token whose ``kid`` is unknown forces one reload (at most once per
``FORCED_REFRESH_INTERVAL`` so random kids cannot hammer the database).

A verified token's claims are remembered (at most ``VERIFIED_CACHE_SIZE`` tokens) while the key
snapshot that verified it is current and the token has not expired, so a backend introspecting
the same token again skips the ES256 verification; whether its session is live is checked by
the caller on every request.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ... import errors
from ...config import Settings
from ...security import contexts, tokens
from ...security.crypto import Cipher
from ...store import Store, Tx
from .audit import audit

CHANNEL = "authsvc_keys"
CACHE_SECONDS = 30.0  # while listening to CHANNEL
UNHEARD_SECONDS = 1.0  # while not
PUBLISH_LEAD = 3  # seconds a new key is published before it signs (> UNHEARD_SECONDS + a reload)
FORCED_REFRESH_INTERVAL = 1.0
RETIRE_MARGIN = 60  # seconds an old key outlives the last token it may have signed
MAX_ACTIVATE_IN = 30 * 24 * 3600
PRUNE_AFTER = 7 * 24 * 3600
VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Key:
    kid: str
    jwk: dict[str, Any]
    public_key: ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class _Snapshot:
    keys: tuple[_Key, ...]  # published keys, newest first
    signing_kid: str | None
    expires: float  # time.monotonic() after which the snapshot must be reloaded

    def fresh(self) -> bool:
        return time.monotonic() < self.expires

    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {k.kid: k.public_key for k in self.keys}


class KeyService:
    def __init__(
        self, store: Store, cipher: Cipher, settings: Settings, *, cache_seconds: float = CACHE_SECONDS,
        listen: bool = True,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._settings = settings
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._listen = listen  # started by the first use (a CLI process that never signs never listens)
        self._listening = False
        self._generation = 0  # bumped by every notification and listener state change
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._last_forced = float("-inf")
        # token -> (claims, snapshot that verified it, wall-clock expiry of the entry)
        self._verified: dict[str, tuple[dict[str, Any], _Snapshot, float]] = {}
        self._verified_lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def sign(self, claims: dict[str, Any]) -> str:
        """Sign access-token ``claims`` with the signing key (created on first use)."""
        missing = [c for c in tokens.REQUIRED_CLAIMS if claims.get(c) is None]
        if missing:
            raise ValueError(f"access token claims missing: {', '.join(missing)}")
        kid = self._signing_kid()
        return tokens.sign(claims, kid=kid, private_pem=self._private_key(kid))

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid access token signed by a published key; ``InvalidToken`` otherwise.

        Session revocation is the caller's business.
        """
        snapshot = self._current()
        hit = self._verified.get(token)
        if hit is not None and hit[1] is snapshot and time.time() < hit[2]:
            return dict(hit[0])
        keys = snapshot.public_keys()
        kid = tokens.header_kid(token)
        if kid is not None and kid not in keys and len(kid) <= 128 and self._may_force_refresh():
            snapshot = self._load(force=True)
            keys = snapshot.public_keys()
        claims = tokens.decode(
            token, public_keys=keys, issuer=self._settings.issuer, audience=self._settings.audience
        )
        if isinstance(claims.get("exp"), int):
            with self._verified_lock:
                while len(self._verified) >= VERIFIED_CACHE_SIZE:
                    del self._verified[next(iter(self._verified))]  # the oldest entry
                self._verified[token] = (dict(claims), snapshot, min(claims["exp"], time.time() + self._cache_seconds))
        return claims

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """``{"keys": [...]}``: every published public key (never a private member).

        Creates the first key if there is none yet, so verifiers that fetch the JWKS before
        the first login do not cache an empty set.
        """
        self._signing_kid()
        return {"keys": [tokens.public_jwk(k.jwk) for k in self._current().keys]}

    def rotate(self, activate_in: int = 0, *, actor: str | None = None, reason: str | None = None) -> str:
        """Publish a new key now, sign with it from ``now + activate_in`` seconds (at least
        ``PUBLISH_LEAD`` when a key signs already); returns its kid.

        Older keys stay published until the tokens they may sign before then have expired.
        With ``actor`` the rotation is written to the audit log (with ``reason``) in the same
        transaction. Clients caching the JWKS (``max-age=300``) only see the new key in time
        when ``activate_in`` covers their cache lifetime.
        """
        if isinstance(activate_in, bool) or not isinstance(activate_in, int):
            raise TypeError("activate_in must be an integer number of seconds")
        if not 0 <= activate_in <= MAX_ACTIVATE_IN:
            raise ValueError(f"activate_in must be between 0 and {MAX_ACTIVATE_IN} seconds")
        with self._store.transaction() as tx:
            tx.keys.lock()
            if tx.keys.signing(self._settings.access_token_ttl) is None:
                # nobody signs yet, so nobody can sign with a key others do not publish
                if activate_in > 0:
                    self._insert(tx, 0)  # a key for the meantime
            else:
                activate_in = max(activate_in, PUBLISH_LEAD)
            kid, activate_at = self._insert(tx, activate_in)
            if actor is not None:
                audit(tx, actor, "keys.rotated", None, kid=kid, activate_at=activate_at, reason=reason)
        self.refresh()
        return kid

    def withdraw(self, kid: str, *, actor: str, reason: str | None = None) -> bool:
        """Unpublish ``kid`` now (a compromised key): every token it signed stops verifying on
        every replica as soon as this commits. Refuses the key that signs now (rotate first and
        let the new key activate). False when no such published key exists."""
        with self._store.transaction() as tx:
            tx.keys.lock()
            signing = tx.keys.signing(self._settings.access_token_ttl)
            if signing is not None and signing.kid == kid:
                raise errors.Conflict("this key signs now: rotate first and wait until the new key signs")
            done = tx.keys.withdraw(kid)
            if done:
                audit(tx, actor, "keys.withdrawn", None, kid=kid, reason=reason)
        self.refresh()
        return done

    def list(self) -> list[dict[str, Any]]:
        """Every stored key, newest first, with its ``state``: ``signing``, ``published (next)``
        (announced, not signing yet), ``published (retiring)`` (still verifies old tokens) or
        ``unpublished`` (kept until pruned)."""
        with self._store.transaction() as tx:
            rows = tx.keys.all()
            signing = tx.keys.signing(self._settings.access_token_ttl)
        signing_kid = signing.kid if signing is not None else None
        out = []
        for row in rows:
            if row.kid == signing_kid:
                state = "signing"
            elif not row.published:
                state = "unpublished"
            elif not row.active:
                state = "published (next)"
            else:
                state = "published (retiring)"
            out.append({**asdict(row), "state": state})
        return out

    def ensure_signing_key(self) -> str:
        """The kid of the signing key, creating one if none can sign (race-free across processes)."""
        return self._signing_kid()

    def refresh(self) -> None:
        """Forget the cached keys (the next call reloads them from the database)."""
        with self._verified_lock:
            self._generation += 1  # a load running now must not keep what it read
            self._snapshot = None
            self._verified.clear()

    def _changed(self, _payload: str) -> None:
        self.refresh()

    def _listener_state(self, listening: bool) -> None:
        with self._verified_lock:
            self._listening = listening
        self.refresh()

    def prune(self, older_than: int = PRUNE_AFTER) -> builtins.list[str]:
        """Delete keys unpublished more than ``older_than`` seconds ago; returns their kids."""
        with self._store.transaction() as tx:
            kids = tx.keys.delete_expired(int(older_than))
        with self._lock:
            for kid in kids:
                self._private.pop(kid, None)
        return kids

    # ------------------------------------------------------------------ internals
    def _signing_kid(self) -> str:
        snapshot = self._current()
        if snapshot.signing_kid is None:
            self._create_if_missing()
            snapshot = self._load(force=True)
        if snapshot.signing_kid is None:  # pragma: no cover - the insert above guarantees one
            raise errors.StoreError("no signing key available")
        return snapshot.signing_kid

    def _create_if_missing(self) -> None:
        with self._store.transaction() as tx:
            tx.keys.lock()
            if tx.keys.signing(self._settings.access_token_ttl) is None:
                self._insert(tx, 0)

    def _insert(self, tx: Tx, activate_in: int) -> tuple[str, datetime]:
        kid, pem, jwk = tokens.generate_es256_key()
        activate_at = tx.keys.insert(
            kid,
            private_key_enc=self._cipher.encrypt(pem, aad=contexts.signing_key_aad(kid)),
            public_jwk=json.dumps(jwk, sort_keys=True),
            activate_in=activate_in,
        )
        tx.keys.retire_others(kid, activate_at=activate_at, grace=self._settings.access_token_ttl + RETIRE_MARGIN)
        return kid, activate_at

    def _current(self) -> _Snapshot:
        if self._listen:
            with self._lock:
                if self._listen:
                    self._listen = False
                    self._store.listen(CHANNEL, self._changed, self._listener_state)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.fresh():
            return snapshot
        return self._load(force=False)

    def _may_force_refresh(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last_forced < FORCED_REFRESH_INTERVAL:
                return False
            self._last_forced = now
            return True

    def _load(self, *, force: bool) -> _Snapshot:
        with self._lock:
            snapshot = self._snapshot
            if not force and snapshot is not None and snapshot.fresh():
                return snapshot  # another thread reloaded while we waited
            started = time.monotonic()
            with self._verified_lock:
                generation, listening = self._generation, self._listening
            with self._store.transaction() as tx:
                rows = tx.keys.published()
                signing = tx.keys.signing(self._settings.access_token_ttl)
                db_now = tx.keys.clock()
            keys = []
            lifetime = self._cache_seconds if listening else min(self._cache_seconds, UNHEARD_SECONDS)
            for row in rows:
                jwk = row.public_jwk
                if isinstance(jwk, str):
                    jwk = json.loads(jwk)
                try:
                    public_key = tokens.load_public_key(jwk)
                except ValueError:
                    continue  # a malformed row must not take verification down
                keys.append(_Key(kid=row.kid, jwk=dict(jwk), public_key=public_key))
                # reload as soon as something this snapshot knows of changes
                for moment in (row.activate_at, row.publish_until):
                    if moment is not None and moment > db_now:
                        lifetime = min(lifetime, (moment - db_now).total_seconds())
            signing_kid = None
            if signing is not None:
                signing_kid = signing.kid
                if signing.publish_until is not None:
                    stop = (signing.publish_until - db_now).total_seconds() - self._settings.access_token_ttl
                    lifetime = min(lifetime, max(stop, 0.0))
            with self._verified_lock:
                if generation != self._generation:
                    lifetime = 0.0  # changed while we read: answer this call, keep nothing
                snapshot = _Snapshot(keys=tuple(keys), signing_kid=signing_kid, expires=started + lifetime)
                self._snapshot = snapshot
            known = {k.kid for k in keys}
            for kid in [k for k in self._private if k not in known]:
                del self._private[kid]
            return snapshot

    def _private_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        key = self._private.get(kid)
        if key is not None:
            return key
        with self._store.transaction() as tx:
            sealed = tx.keys.private_key_enc(kid)
        if sealed is None:  # deleted meanwhile: pick again next time
            self.refresh()
            raise errors.StoreError("signing key disappeared")
        pem = self._cipher.decrypt(sealed, aad=contexts.signing_key_aad(kid))
        key = tokens.load_private_key(pem)
        with self._lock:
            self._private[kid] = key
        return key
