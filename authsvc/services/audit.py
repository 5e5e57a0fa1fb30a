"""The audit log: who changed what, and why (operators give a reason).

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
- PostgreSQL itself refuses UPDATE, DELETE and TRUNCATE on the log and its checkpoints
  (migration 0030), an unkeyed row once the chain key exists, deleting the chain key, and a
  checkpoint dated in the future or naming no row with that hash (migration 0060); only the
  tables' owner could lift that, and the service does not run as the owner (README,
  "Database roles").
- A stored checkpoint that is not authentic, or dated after the database's clock, never stops
  the next one from being written (it is reported by ``verify``).
- The chain head is published regularly as a checkpoint (row id, head hash, time, HMAC under
  the chain key): stored in ``audit_checkpoints``, written to the log and sent as the
  ``audit.checkpoint`` webhook through the outbox. ``verify`` checks every stored checkpoint
  (and any the operator supplies from the log or the webhook receiver), so rows cut off the end
  of the log are found, up to the last checkpoint.
- Writers serialise on an advisory lock held to the end of their transaction.
- Operators' entries carry a reason that says something (:func:`check_reason`) and the OS user
  who ran the command.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from .. import errors
from ..config import os_user
from ..security.crypto import Cipher
from ..store import Store, Tx

_log = logging.getLogger(__name__)

GENESIS = b"\x00" * 32
CHAIN_LEGACY = 1  # SHA-256 chain, before migration 0030
CHAIN_KEYED = 2  # HMAC chain under the chain key
KEY_ID = 1
MIN_REASON = 5
MAX_REASON = 500
_ROW_LABEL = b"authsvc audit row v2\x00"
_CHECKPOINT_LABEL = b"authsvc audit checkpoint v1\x00"


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


def _body(at: datetime, actor: str, event: str, account_id: Any, detail: Any) -> bytes:
    return json.dumps(
        [at.astimezone(timezone.utc).isoformat(), actor, event, str(account_id) if account_id else None, detail],
        sort_keys=True, separators=(",", ":"), default=str,
    ).encode()


def _legacy_digest(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev + body).digest()


def _key_aad(key_id: int) -> bytes:
    return f"audit-chain-key:{key_id}".encode()


class AuditChain:
    """The chain key: created once per database, kept encrypted, cached in memory once read.

    The sealed value also holds ``legacy_until``: the newest row of the unkeyed chain when the
    key was made. A plain-SHA row after it is a forgery (no rewriting the log as "legacy")."""

    def __init__(self, cipher: Cipher) -> None:
        self._cipher = cipher
        self._material: tuple[bytes, int] | None = None
        self._lock = threading.Lock()

    def install(self, store: Store) -> "AuditChain":
        """Make the chain reachable from every transaction of ``store`` (``audit(tx, ...)``)."""
        store.extensions["audit_chain"] = self
        return self

    def ensure(self, store: Store) -> None:
        """Create the chain key if the database has none (race-free under the audit lock)."""
        with store.transaction() as tx:
            if tx.one("audit_key_get") is None:
                tx.one("audit_lock")
                if tx.one("audit_key_get") is None:
                    last = tx.one("audit_last_hash")
                    material = {"key": os.urandom(32).hex(), "legacy_until": int(last["id"]) if last else 0}
                    sealed = self._cipher.encrypt(json.dumps(material).encode(), aad=_key_aad(KEY_ID))
                    tx.run("audit_key_insert", key_enc=sealed)

    def _load(self, tx: Tx) -> tuple[bytes, int]:
        if self._material is not None:
            return self._material
        row = tx.one("audit_key_get")
        if row is None:
            raise errors.StoreError("the audit chain key is missing (run the service once to create it)")
        material = json.loads(self._cipher.decrypt(row["key_enc"], aad=_key_aad(row["id"])))
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
        row = tx.one("audit_key_get")
        if row is None or not self._cipher.needs_reencrypt(row["key_enc"]):
            return 0
        plain = self._cipher.decrypt(row["key_enc"], aad=_key_aad(row["id"]))
        return tx.run("audit_key_rewrap", id=row["id"], old=row["key_enc"],
                      key_enc=self._cipher.encrypt(plain, aad=_key_aad(row["id"])))

    def row_mac(self, tx: Tx, prev: bytes, body: bytes) -> bytes:
        return hmac.new(self.key(tx), _ROW_LABEL + prev + body, hashlib.sha256).digest()

    def checkpoint_mac(self, tx: Tx, at: datetime, last_id: int, head: bytes) -> bytes:
        data = json.dumps([at.astimezone(timezone.utc).isoformat(), int(last_id), head.hex()]).encode()
        return hmac.new(self.key(tx), _CHECKPOINT_LABEL + data, hashlib.sha256).digest()


def _chain_of(tx: Tx) -> AuditChain:
    chain = tx.extensions.get("audit_chain")
    if chain is None:
        raise errors.ConfigError("no audit chain key configured for this store (AuditChain.install)")
    return chain


def audit(tx: Tx, actor: str, event: str, account_id: str | None, /, **detail: Any) -> None:
    """Append one row. An operator's entry (actor ``operator:<name>``, the name being what
    ``AUTHSVC_OPERATOR`` declares) also records the OS user running the command (``os_user``,
    from the process's uid), which no environment variable can change."""
    if actor.startswith("operator:"):
        detail["os_user"] = os_user()
    detail = json.loads(json.dumps(detail, default=str))
    chain = _chain_of(tx)
    tx.one("audit_lock")
    last = tx.one("audit_last_hash")
    prev = bytes(last["hash"]) if last is not None and last["hash"] is not None else GENESIS
    at = datetime.now(timezone.utc)
    tx.run(
        "audit_insert",
        at=at,
        actor=actor,
        action=event,
        account_id=account_id,
        detail=json.dumps(detail, sort_keys=True),
        prev_hash=prev,
        hash=chain.row_mac(tx, prev, _body(at, actor, event, account_id, detail)),
        chain=CHAIN_KEYED,
    )


class EventSink(Protocol):
    def event(self, tx: Tx, event_type: str, data: dict) -> None: ...

    def kick(self) -> None: ...


@dataclass
class Verification:
    checked: int = 0
    legacy: int = 0
    broken_at: int | None = None  # id of the first bad row
    problem: str | None = None
    last_id: int | None = None
    checkpoints: int = 0
    last_checkpoint: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Checkpoint:
    id: int
    at: datetime
    last_id: int
    head: bytes
    mac: bytes

    def public(self) -> dict:
        return {"checkpoint_id": self.id, "at": self.at.astimezone(timezone.utc).isoformat(),
                "last_id": self.last_id, "head": self.head.hex(), "mac": self.mac.hex()}


class AuditLog:
    def __init__(self, store: Store, chain: AuditChain, events: EventSink | None = None) -> None:
        self._store = store
        self._chain = chain
        self._events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tail(self, limit: int = 20) -> list[dict]:
        with self._store.transaction() as tx:
            return tx.all("audit_tail", limit=limit)

    # ------------------------------------------------------------------ verify
    def verify(self, batch: int = 1000, external: Iterable[tuple[int, bytes]] = ()) -> Verification:
        """Recompute the chain; check every stored checkpoint and the ``external`` ones
        (``(last_id, head)`` taken from the log or the webhook receiver)."""
        result = Verification()
        with self._store.transaction() as tx:
            try:
                self._chain.key(tx)
            except (errors.StoreError, errors.DecryptionError) as exc:
                result.problem = f"the audit chain key cannot be read ({exc.detail}): the log cannot be vouched for"
                return result
            stored = [Checkpoint(r["id"], r["at"], r["last_id"], bytes(r["head"]), bytes(r["mac"]))
                      for r in tx.all("audit_checkpoints_all")]
            for cp in stored:
                if not hmac.compare_digest(cp.mac, self._chain.checkpoint_mac(tx, cp.at, cp.last_id, cp.head)):
                    result.problem = f"checkpoint #{cp.id} is not authentic"
                    return result
        wanted: dict[int, list[tuple[str, bytes]]] = {}
        for cp in stored:
            wanted.setdefault(cp.last_id, []).append((f"checkpoint #{cp.id}", cp.head))
        for last_id, head in external:
            wanted.setdefault(int(last_id), []).append((f"the given checkpoint (row {last_id})", bytes(head)))
        result.checkpoints = len(stored)
        result.last_checkpoint = stored[-1].public() if stored else None

        pending = sorted(wanted)  # row ids named by checkpoints, checked as the walk reaches them
        next_wanted = 0
        prev, after = GENESIS, 0
        unanchored: int | None = None  # first unkeyed row that no keyed row or checkpoint covers yet
        with self._store.transaction() as tx:
            legacy_until = self._chain.legacy_until(tx)
        while True:
            with self._store.transaction() as tx:
                rows = tx.all("audit_page", after=after, limit=batch)
                for r in rows:
                    if next_wanted < len(pending) and pending[next_wanted] < r["id"]:
                        result.broken_at = r["id"]
                        result.problem = f"row {pending[next_wanted]} named by a checkpoint is missing"
                        return result
                    body = _body(r["at"], r["actor"], r["action"], r["account_id"], r["detail"])
                    stored_prev = bytes(r["prev_hash"]) if r["prev_hash"] is not None else None
                    if r["chain"] == CHAIN_KEYED:
                        expected = self._chain.row_mac(tx, prev, body)
                        unanchored = None  # this row's MAC covers every row before it
                    elif r["chain"] == CHAIN_LEGACY:
                        if r["id"] > legacy_until:
                            result.broken_at = r["id"]
                            result.problem = (f"row {r['id']} is not keyed but was written after the chain key "
                                              "existed: a forgery")
                            return result
                        expected = _legacy_digest(prev, body)
                        if unanchored is None:
                            unanchored = r["id"]
                    else:
                        result.broken_at, result.problem = r["id"], f"row {r['id']} has an unknown chain version"
                        return result
                    if stored_prev != prev or r["hash"] is None or not hmac.compare_digest(bytes(r["hash"]), expected):
                        result.broken_at = r["id"]
                        result.problem = f"row {r['id']} was changed, or a row before it was added or removed"
                        return result
                    if next_wanted < len(pending) and pending[next_wanted] == r["id"]:
                        for label, head in wanted[r["id"]]:
                            if not hmac.compare_digest(head, expected):
                                result.broken_at, result.problem = r["id"], f"row {r['id']} does not match {label}"
                                return result
                        next_wanted += 1
                        unanchored = None  # an authentic checkpoint covers every row up to here
                    prev, after = expected, r["id"]
                    result.checked += 1
                    result.legacy += r["chain"] == CHAIN_LEGACY
            if len(rows) < batch:
                break
        result.last_id = after or None
        if next_wanted < len(pending):
            missing = pending[next_wanted]
            label = wanted[missing][0][0]
            result.problem = f"rows cut off the end: {label} covers row {missing}, the log ends at row {after}"
            return result
        if unanchored is not None:
            if after > legacy_until:
                # nothing vouches for these: an attacker can write (or rewrite) unkeyed rows at will
                result.broken_at = max(unanchored, legacy_until + 1)
                result.problem = (f"rows {result.broken_at}..{after} are not keyed and no keyed row or "
                                  "checkpoint covers them")
                return result
            result.notes.append("the rows from before the keyed chain are not covered yet: run "
                                "`authsvc audit checkpoint`")
        return result

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, *, min_age: float = 0.0) -> Checkpoint | None:
        """Sign and publish the chain head. Skipped (None) when the log is empty, when the last
        checkpoint already covers the head, or when it is younger than ``min_age`` seconds
        (several processes run this on a timer)."""
        with self._store.transaction() as tx:
            tx.one("audit_lock")
            head = tx.one("audit_last_hash")
            if head is None or head["hash"] is None:
                return None
            last = tx.one("audit_checkpoint_last")
            now = tx.scalar("audit_clock")
            if last is not None and self._counts(tx, last, now) and (
                last["last_id"] == head["id"] or (now - last["at"]).total_seconds() < min_age
            ):
                return None
            head_hash = bytes(head["hash"])
            mac = self._chain.checkpoint_mac(tx, now, head["id"], head_hash)
            cp_id = tx.scalar("audit_checkpoint_insert", at=now, last_id=head["id"], head=head_hash, mac=mac)
            cp = Checkpoint(cp_id, now, head["id"], head_hash, mac)
            if self._events is not None:
                self._events.event(tx, "audit.checkpoint", cp.public())
        if self._events is not None:
            self._events.kick()
        _log.info("audit checkpoint #%s at %s: rows up to %s, head %s, mac %s", cp.id,
                  cp.at.isoformat(), cp.last_id, cp.head.hex(), cp.mac.hex())
        return cp

    def _counts(self, tx: Tx, last: dict, now: datetime) -> bool:
        """Whether the newest stored checkpoint may stand in for a new one: authentic and not
        dated after ``now`` (a forged one must not silence every later checkpoint)."""
        if last["at"] > now:
            return False
        expected = self._chain.checkpoint_mac(tx, last["at"], last["last_id"], bytes(last["head"]))
        return hmac.compare_digest(bytes(last["mac"]), expected)

    def start(self, interval: float) -> None:
        """Publish a checkpoint every ``interval`` seconds (first one after ``interval``)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.checkpoint(min_age=interval / 2)
                except Exception as exc:  # noqa: BLE001 - the timer must outlive a database outage
                    _log.warning("audit checkpoint failed: %s", type(exc).__name__)

        self._thread = threading.Thread(target=run, name="authsvc-audit-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
