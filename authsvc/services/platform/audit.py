"""The audit log: who changed what, and why (operators give a reason).

Three modules: this one holds the chain key (:class:`AuditChain`), the row format and
:func:`audit`, the write path every service uses; ``audit_log.py`` (:class:`AuditLog`) reads the
tail, seals committed rows, publishes checkpoints and runs the sealer thread; ``audit_verify.py``
walks the chains to verify them. The rules below hold for all three.

Rules:
- Rows form a keyed chain (``chain = 2``): each row's ``hash`` is an HMAC-SHA256, under the
  *chain key*, of the previous row's hash and the row's content. The chain key is 32 random
  bytes stored only encrypted under ``AUTHSVC_ENCRYPTION_KEY`` (table ``audit_chain_keys``), so
  whoever can write the database but does not hold the encryption key cannot recompute the
  chain after editing, inserting or deleting a row. ``authsvc keys reencrypt`` re-wraps it under
  a new encryption key; the chain key itself never changes, so old rows stay verifiable.
- Unkeyed rows (``chain = 1``: written before the keyed chain existed) keep the plain SHA-256
  link. Such a row is trusted only if it predates the chain key (its id is at most
  ``legacy_until``, sealed with the key) and once a later keyed row or an authentic checkpoint
  covers it (their MAC covers the whole chain before them). An unkeyed row after
  ``legacy_until`` is a forgery, whatever follows it; unkeyed rows at the end that nothing
  covers make ``verify`` note that a checkpoint is due.
- No global lock on a request's path (migration 0078). A request inserts its row unlinked
  (``chain = 3``): the row's ``hash`` is an HMAC under the chain key of a random ``nonce`` and
  the row's content, so the database role still cannot write a row that verifies, and a copy of
  a row is refused (unique index) and found by ``verify``. After commit a *sealer* links the
  committed rows into the chain, in ``audit_seals``: seal n is the HMAC of seal n-1, n, the
  row's id and the row's HMAC. Every replica runs a sealer thread
  (``audit_log.AuditLog.start``); one round at a time holds a transaction-scoped advisory lock
  that requests never take, so any replica may seal and a replica that dies mid-round leaves
  nothing half done. A trigger queues each new row (``audit_unsealed``); a row committed but not
  sealed yet (a crash, an outage, a lost queue entry) is sealed by the next round, and
  ``verify`` finds any row no seal covers, reporting it once it is older than a bound
  (``UNSEALED_BOUND`` seconds).
- The rows written before migration 0078 (``audit_sealing.linked_until``, or the chain key's
  ``legacy_until`` if later) keep their linked chain and are verified as before; the first seal
  links onto the newest of them. During a rolling upgrade the previous version still writes
  linked keyed rows (``chain = 2``) under its lock: they are sealed like the others, their MAC
  checked against the link they stored.
- PostgreSQL itself refuses UPDATE, DELETE and TRUNCATE on the log, its seals and its
  checkpoints (migrations 0030, 0078), an unkeyed row once the chain key exists, deleting the
  chain key, and a checkpoint dated in the future or naming no row or seal with that hash
  (migrations 0060, 0078); only the tables' owner could lift that, and the service does not run
  as the owner (README, "Database roles").
- A stored checkpoint that is not authentic, or dated after the database's clock, never stops
  the next one from being written (it is reported by ``verify``).
- The chain head is published regularly as a checkpoint (the newest seal: its number, its row
  id, its hash, the time, an HMAC under the chain key): stored in ``audit_checkpoints``, written
  to the log and sent as the ``audit.checkpoint`` webhook through the outbox. ``verify`` checks
  every stored checkpoint (and any the operator supplies from the log or the webhook receiver),
  so rows or seals cut off the end of the log are found, up to the last checkpoint.
- Operators' entries carry a reason that says something (:func:`check_reason`) and the OS user
  who ran the command.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ... import errors
from ...config import os_user
from ...security import contexts
from ...security.crypto import Cipher
from ...store import Store, Tx

GENESIS = b"\x00" * 32
CHAIN_LEGACY = 1  # SHA-256 chain, before migration 0030
CHAIN_KEYED = 2  # HMAC chain under the chain key, linked by the writer under a lock
CHAIN_UNLINKED = 3  # HMAC of the row alone, linked after commit by the sealer (audit_seals)
UNSEALED_BOUND = 60.0  # seconds: an unsealed row older than this is a failure of verify
KEY_ID = 1
MIN_REASON = 5
MAX_REASON = 500


def check_reason(reason: str | None) -> str:
    """An operator's reason, whitespace collapsed; refused unless it says something (at least
    ``MIN_REASON`` characters with a letter in them: "", "  ", "x" or "..." are refused)."""
    text = " ".join((reason or "").split())
    if len(text) < MIN_REASON or not any(ch.isalpha() for ch in text):
        raise errors.InvalidRequest(
            f"the reason must say why (at least {MIN_REASON} characters with a letter, e.g. a ticket "
            "and a few words)",
            errors=[{"field": "reason", "message": "too short"}],
        )
    if len(text) > MAX_REASON:
        raise errors.InvalidRequest(f"the reason is longer than {MAX_REASON} characters")
    return text


def row_body(at: datetime, actor: str, event: str, account_id: Any, detail: Any) -> bytes:
    return json.dumps(
        [at.astimezone(UTC).isoformat(), actor, event, str(account_id) if account_id else None, detail],
        sort_keys=True, separators=(",", ":"), default=str,
    ).encode()


def legacy_digest(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev + body).digest()


class AuditChain:
    """The chain key: created once per database, kept encrypted, cached in memory once read.

    The sealed value also holds ``legacy_until``: the newest row of the unkeyed chain when the
    key was made. A plain-SHA row after it is a forgery (no rewriting the log as "legacy")."""

    def __init__(self, cipher: Cipher) -> None:
        self._cipher = cipher
        self._material: tuple[bytes, int] | None = None
        self._lock = threading.Lock()

    def install(self, store: Store) -> AuditChain:
        """Make the chain reachable from every transaction of ``store`` (``audit(tx, ...)``)."""
        store.extensions["audit_chain"] = self
        return self

    def ensure(self, store: Store) -> None:
        """Create the chain key if the database has none (race-free under the audit lock)."""
        with store.transaction() as tx:
            if tx.audit.key() is None:
                tx.audit.lock()
                if tx.audit.key() is None:
                    material = {"key": os.urandom(32).hex(), "legacy_until": tx.audit.last_id() or 0}
                    sealed = self._cipher.encrypt(json.dumps(material).encode(),
                                                  aad=contexts.audit_chain_key_aad(KEY_ID))
                    tx.audit.insert_key(sealed)

    def _load(self, tx: Tx) -> tuple[bytes, int]:
        if self._material is not None:
            return self._material
        row = tx.audit.key()
        if row is None:
            raise errors.StoreError("the audit chain key is missing (run the service once to create it)")
        material = json.loads(self._cipher.decrypt(row.key_enc, aad=contexts.audit_chain_key_aad(row.id)))
        loaded = (bytes.fromhex(material["key"]), int(material["legacy_until"]))
        with self._lock:
            self._material = loaded
        return loaded

    def key(self, tx: Tx) -> bytes:
        return self._load(tx)[0]

    def legacy_until(self, tx: Tx) -> int:
        return self._load(tx)[1]

    def rewrap(self, tx: Tx) -> int:
        """Re-encrypt the stored chain key under the current encryption key; 1 if it was needed."""
        row = tx.audit.key()
        if row is None or not self._cipher.needs_reencrypt(row.key_enc):
            return 0
        plain = self._cipher.decrypt(row.key_enc, aad=contexts.audit_chain_key_aad(row.id))
        return tx.audit.rewrap_key(row.id, row.key_enc,
                                   self._cipher.encrypt(plain, aad=contexts.audit_chain_key_aad(row.id)))

    def row_mac(self, tx: Tx, prev: bytes, body: bytes) -> bytes:
        return hmac.new(self.key(tx), contexts.AUDIT_ROW_LABEL + prev + body, hashlib.sha256).digest()

    def checkpoint_mac(self, tx: Tx, at: datetime, last_id: int, head: bytes, seq: int | None = None) -> bytes:
        """A checkpoint's MAC: of a linked row (``seq`` None) or of seal ``seq`` (of row ``last_id``)."""
        if seq is None:
            data = json.dumps([at.astimezone(UTC).isoformat(), int(last_id), head.hex()]).encode()
            return hmac.new(self.key(tx), contexts.AUDIT_CHECKPOINT_LABEL + data, hashlib.sha256).digest()
        data = json.dumps([at.astimezone(UTC).isoformat(), int(seq), int(last_id), head.hex()]).encode()
        return hmac.new(self.key(tx), contexts.AUDIT_SEALED_CHECKPOINT_LABEL + data, hashlib.sha256).digest()

    def unlinked_mac(self, tx: Tx, nonce: bytes, body: bytes) -> bytes:
        return hmac.new(self.key(tx), contexts.AUDIT_UNLINKED_LABEL + nonce + body, hashlib.sha256).digest()

    def seal_mac(self, tx: Tx, prev: bytes, seq: int, row_id: int, row_hash: bytes) -> bytes:
        data = prev + int(seq).to_bytes(8, "big") + int(row_id).to_bytes(8, "big") + row_hash
        return hmac.new(self.key(tx), contexts.AUDIT_SEAL_LABEL + data, hashlib.sha256).digest()


def _chain_of(tx: Tx) -> AuditChain:
    chain = tx.extensions.get("audit_chain")
    if chain is None:
        raise errors.ConfigError("no audit chain key configured for this store (AuditChain.install)")
    return chain


def audit(tx: Tx, actor: str, event: str, account_id: str | None, /, **detail: Any) -> None:
    """Append one row (unlinked: the sealer links it after commit; no lock). An operator's entry
    (actor ``operator:<name>``, the name being what ``AUTHSVC_OPERATOR`` declares) also records
    the OS user running the command (``os_user``, from the process's uid), which no environment
    variable can change."""
    if actor.startswith("operator:"):
        detail["os_user"] = os_user()
    detail = json.loads(json.dumps(detail, default=str))
    chain = _chain_of(tx)
    at = datetime.now(UTC)
    nonce = os.urandom(16)
    tx.audit.insert(
        at=at,
        actor=actor,
        action=event,
        account_id=account_id,
        detail=json.dumps(detail, sort_keys=True),
        nonce=nonce,
        hash=chain.unlinked_mac(tx, nonce, row_body(at, actor, event, account_id, detail)),
    )


def linked_boundary(tx: Tx, chain: AuditChain) -> int:
    """The newest id of the linked chain: rows after it are sealed."""
    return max(tx.audit.linked_until(), chain.legacy_until(tx))


@dataclass(frozen=True)
class Checkpoint:
    id: int
    at: datetime
    last_id: int
    head: bytes
    mac: bytes
    seq: int | None = None  # the seal it covers; None: a row of the linked chain

    def public(self) -> dict:
        data = {"checkpoint_id": self.id, "at": self.at.astimezone(UTC).isoformat(),
                "last_id": self.last_id, "head": self.head.hex(), "mac": self.mac.hex()}
        if self.seq is not None:
            data["seal"] = self.seq
        return data
