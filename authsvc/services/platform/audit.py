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
- No global lock on a request's path (migration 0078). A request inserts its row unlinked
  (``chain = 3``): the row's ``hash`` is an HMAC under the chain key of a random ``nonce`` and
  the row's content, so the database role still cannot write a row that verifies, and a copy of
  a row is refused (unique index) and found by ``verify``. After commit a *sealer* links the
  committed rows into the chain, in ``audit_seals``: seal n is the HMAC of seal n-1, n, the row's
  id and the row's HMAC. Every replica runs a sealer thread (:meth:`AuditLog.start`); one round
  at a time holds a transaction-scoped advisory lock that requests never take, so any replica may
  seal and a replica that dies mid-round leaves nothing half done. A trigger queues each new row
  (``audit_unsealed``); a row committed but not sealed yet (a crash, an outage, a lost queue
  entry) is sealed by the next round, and ``verify`` finds any row no seal covers, reporting it
  once it is older than a bound (``UNSEALED_BOUND`` seconds).
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
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ... import errors
from ...config import os_user
from ...security import contexts
from ...security.crypto import Cipher
from ...store import Store, Tx

_log = logging.getLogger("authsvc.services.audit")

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


def _body(at: datetime, actor: str, event: str, account_id: Any, detail: Any) -> bytes:
    return json.dumps(
        [at.astimezone(UTC).isoformat(), actor, event, str(account_id) if account_id else None, detail],
        sort_keys=True, separators=(",", ":"), default=str,
    ).encode()


def _legacy_digest(prev: bytes, body: bytes) -> bytes:
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
            if tx.one("audit_key_get") is None:
                tx.one("audit_lock")
                if tx.one("audit_key_get") is None:
                    last = tx.one("audit_last_hash")
                    material = {"key": os.urandom(32).hex(), "legacy_until": int(last["id"]) if last else 0}
                    sealed = self._cipher.encrypt(json.dumps(material).encode(),
                                                  aad=contexts.audit_chain_key_aad(KEY_ID))
                    tx.run("audit_key_insert", key_enc=sealed)

    def _load(self, tx: Tx) -> tuple[bytes, int]:
        if self._material is not None:
            return self._material
        row = tx.one("audit_key_get")
        if row is None:
            raise errors.StoreError("the audit chain key is missing (run the service once to create it)")
        material = json.loads(self._cipher.decrypt(row["key_enc"], aad=contexts.audit_chain_key_aad(row["id"])))
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
        plain = self._cipher.decrypt(row["key_enc"], aad=contexts.audit_chain_key_aad(row["id"]))
        return tx.run("audit_key_rewrap", id=row["id"], old=row["key_enc"],
                      key_enc=self._cipher.encrypt(plain, aad=contexts.audit_chain_key_aad(row["id"])))

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
    tx.run(
        "audit_insert",
        at=at,
        actor=actor,
        action=event,
        account_id=account_id,
        detail=json.dumps(detail, sort_keys=True),
        nonce=nonce,
        hash=chain.unlinked_mac(tx, nonce, _body(at, actor, event, account_id, detail)),
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
    sealed: int = 0  # rows checked through their seal
    unsealed: int = 0  # rows no seal covers yet (younger than the bound)

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
    seq: int | None = None  # the seal it covers; None: a row of the linked chain

    def public(self) -> dict:
        data = {"checkpoint_id": self.id, "at": self.at.astimezone(UTC).isoformat(),
                "last_id": self.last_id, "head": self.head.hex(), "mac": self.mac.hex()}
        if self.seq is not None:
            data["seal"] = self.seq
        return data


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

    # ------------------------------------------------------------------ sealing
    def _boundary(self, tx: Tx) -> int:
        """The newest id of the linked chain: rows after it are sealed."""
        return max(int(tx.scalar("audit_linked_until") or 0), self._chain.legacy_until(tx))

    def seal(self, limit: int = 2000) -> int:
        """One round: link the committed, queued rows into the chain (``audit_seals``), oldest
        id first. Returns how many were sealed; 0 when another process holds the sealing lease
        right now (it is sealing) or nothing waits."""
        with self._store.transaction() as tx:
            if not tx.scalar("audit_seal_lease"):
                return 0
            queued = tx.all("audit_unsealed_batch", limit=limit)
            if not queued:
                return 0
            boundary = self._boundary(tx)
            rows = [q for q in queued if q["row_id"] > boundary and q["hash"] is not None and not q["sealed"]]
            last = tx.one("audit_seal_last")
            if last is not None:
                prev, seq = bytes(last["hash"]), int(last["seq"])
            else:
                head = tx.one("audit_linked_head", until=boundary)
                prev, seq = (bytes(head["hash"]) if head and head["hash"] is not None else GENESIS), 0
            seqs, row_ids, hashes = [], [], []
            for r in rows:
                seq += 1
                prev = self._chain.seal_mac(tx, prev, seq, r["row_id"], bytes(r["hash"]))
                seqs.append(seq)
                row_ids.append(r["row_id"])
                hashes.append(prev)
            if seqs:
                tx.run("audit_seals_insert", seqs=seqs, row_ids=row_ids, hashes=hashes)
            # rows of the linked chain (or gone, or without a hash) leave the queue unsealed:
            # verify walks those through the linked chain, or reports them
            tx.run("audit_unsealed_done", row_ids=[q["row_id"] for q in queued])
        return len(seqs)

    def seal_all(self, limit: int = 2000) -> int:
        total = 0
        while (n := self.seal(limit)) > 0:
            total += n
        return total

    # ------------------------------------------------------------------ verify
    def verify(self, batch: int = 1000, external: Iterable[tuple[int, bytes]] = (), *, seal_first: bool = True,
               unsealed_bound: float = UNSEALED_BOUND) -> Verification:
        """Recompute the linked chain and the sealed one; check every stored checkpoint and the
        ``external`` ones (``(last_id, head)`` taken from the log or the webhook receiver).
        First seals what is committed (``seal_first``), so that rows written a moment ago count;
        rows that no seal covers are then a failure once older than ``unsealed_bound`` seconds."""
        result = Verification()
        if seal_first:
            try:
                self.seal_all()
            except (errors.StoreError, errors.DecryptionError) as exc:  # a read-only role, an unreadable key
                result.notes.append(f"could not seal the waiting rows first ({exc.detail})")
        with self._store.transaction() as tx:
            try:
                self._chain.key(tx)
            except (errors.StoreError, errors.DecryptionError) as exc:
                result.problem = f"the audit chain key cannot be read ({exc.detail}): the log cannot be vouched for"
                return result
            stored = [Checkpoint(r["id"], r["at"], r["last_id"], bytes(r["head"]), bytes(r["mac"]), r["seq"])
                      for r in tx.all("audit_checkpoints_all")]
            for cp in stored:
                if not hmac.compare_digest(cp.mac, self._chain.checkpoint_mac(tx, cp.at, cp.last_id, cp.head, cp.seq)):
                    result.problem = f"checkpoint #{cp.id} is not authentic"
                    return result
            legacy_until = self._chain.legacy_until(tx)
            boundary = self._boundary(tx)
        # row ids named by checkpoints, checked as the walks reach them: a checkpoint of the
        # linked chain names a row and its chain hash, one of the sealed chain a row and its seal
        wanted: dict[int, list[tuple[str, bytes, int | None]]] = {}
        for cp in stored:
            wanted.setdefault(cp.last_id, []).append((f"checkpoint #{cp.id}", cp.head, cp.seq))
        for last_id, head in external:
            wanted.setdefault(int(last_id), []).append((f"the given checkpoint (row {last_id})", bytes(head), None))
        result.checkpoints = len(stored)
        result.last_checkpoint = stored[-1].public() if stored else None

        # ---- the linked chain (rows up to the boundary), in id order
        pending = sorted(i for i in wanted if i <= boundary)
        next_wanted = 0
        prev, after = GENESIS, 0
        unanchored: int | None = None  # first unkeyed row that no keyed row or checkpoint covers yet
        while True:
            with self._store.transaction() as tx:
                rows = tx.all("audit_page", after=after, until=boundary, limit=batch)
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
                        for label, head, seq in wanted[r["id"]]:
                            if seq is not None or not hmac.compare_digest(head, expected):
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

        # ---- the sealed chain, in seal order
        found = self._verify_sealed(result, prev, boundary, wanted, batch)
        if found is None:
            return result
        if found:
            unanchored = None  # the first seal's MAC covers the linked chain's head
        missing_ids = sorted(i for i in wanted if i > boundary and i not in found)
        if missing_ids:
            label = wanted[missing_ids[0]][0][0]
            result.problem = (f"rows cut off the end: {label} covers row {missing_ids[0]}, which no seal "
                              f"covers (the sealed chain ends at seal {result.sealed})")
            return result
        with self._store.transaction() as tx:
            duplicate = tx.one("audit_duplicate_mac")
            if duplicate is not None:
                result.problem = "a row of the log appears twice (the same MAC): a copy was added"
                return result
            unsealed = tx.all("audit_not_sealed", until=boundary)
            for u in unsealed:  # not in the chain yet, but a row must carry its own MAC at once
                problem = self._own_mac_problem(tx, u)
                if problem is not None:
                    result.broken_at, result.problem = u["id"], problem
                    return result
        old = [u for u in unsealed if u["age"] is not None and float(u["age"]) > unsealed_bound]
        if old:
            result.broken_at = old[0]["id"]
            result.problem = (f"{len(old)} row(s) from row {old[0]['id']} on are not sealed "
                              f"{unsealed_bound:.0f} s after they were written (the sealer is not running, or "
                              "the rows were added or their seals removed)")
            return result
        if unsealed:
            result.unsealed = len(unsealed)
            result.notes.append(f"{len(unsealed)} row(s) written in the last {unsealed_bound:.0f} s are not "
                                "sealed yet")
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

    def _verify_sealed(self, result: Verification, prev: bytes, boundary: int,
                       wanted: dict[int, list[tuple[str, bytes, int | None]]], batch: int) -> set[int] | None:
        """Walk the seals from the linked chain's head ``prev``; the row ids sealed, or None
        with ``result.problem`` set."""
        found: set[int] = set()
        after = 0
        while True:
            with self._store.transaction() as tx:
                seals = tx.all("audit_sealed_page", after=after, limit=batch)
                for s in seals:
                    seq, row_id = int(s["seq"]), int(s["row_id"])
                    if seq != after + 1:
                        result.broken_at = row_id
                        result.problem = f"seal {after + 1} is missing (the next is seal {seq}, of row {row_id})"
                        return None
                    if s["id"] is None:
                        result.broken_at = row_id
                        result.problem = f"row {row_id} (seal {seq}) was removed"
                        return None
                    if row_id <= boundary:
                        result.broken_at = row_id
                        result.problem = f"seal {seq} names row {row_id} of the linked chain"
                        return None
                    problem = self._own_mac_problem(tx, s)
                    if problem is not None:
                        result.broken_at, result.problem = row_id, problem
                        return None
                    row_hash = bytes(s["hash"])
                    expected = self._chain.seal_mac(tx, prev, seq, row_id, row_hash)
                    if not hmac.compare_digest(bytes(s["seal"]), expected):
                        result.broken_at = row_id
                        result.problem = (f"seal {seq} (row {row_id}) was changed, "
                                          "or a seal before it was added or removed")
                        return None
                    for label, head, cp_seq in wanted.get(row_id, ()):
                        # a sealed checkpoint names this seal; one from the previous version
                        # (during a rolling upgrade) names the row's own hash
                        ok = (cp_seq in (None, seq) and hmac.compare_digest(head, expected)) or (
                            cp_seq is None and hmac.compare_digest(head, row_hash))
                        if not ok:
                            result.broken_at, result.problem = row_id, f"row {row_id} does not match {label}"
                            return None
                    found.add(row_id)
                    prev, after = expected, seq
                    result.checked += 1
                    result.sealed += 1
                    result.last_id = max(result.last_id or 0, row_id)
            if len(seals) < batch:
                break
        return found

    def _own_mac_problem(self, tx: Tx, r: dict) -> str | None:
        """What is wrong with a row after the linked chain, judged by its own MAC (None: nothing)."""
        row_id = r["id"]
        body = _body(r["at"], r["actor"], r["action"], r["account_id"], r["detail"])
        if r["chain"] == CHAIN_UNLINKED and r["nonce"] is not None:
            own = self._chain.unlinked_mac(tx, bytes(r["nonce"]), body)
        elif r["chain"] == CHAIN_KEYED and r["prev_hash"] is not None:
            # written by the previous version during a rolling upgrade: its MAC covers the
            # link it stored; its seal fixes its place
            own = self._chain.row_mac(tx, bytes(r["prev_hash"]), body)
        elif r["chain"] == CHAIN_LEGACY:
            return f"row {row_id} is not keyed but was written after the chain key existed: a forgery"
        else:
            own = None
        if own is None or r["hash"] is None or not hmac.compare_digest(bytes(r["hash"]), own):
            return f"row {row_id} was changed, or was added without the chain key"
        return None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, *, min_age: float = 0.0) -> Checkpoint | None:
        """Sign and publish the chain head (the newest seal; before any, the newest row of the
        linked chain). Skipped (None) when the log is empty, when the last checkpoint already
        covers the head, or when it is younger than ``min_age`` seconds (several processes run
        this on a timer). Seals what is committed first."""
        self.seal_all()
        with self._store.transaction() as tx:
            seal = tx.one("audit_seal_last")
            if seal is not None:
                last_id, seq, head_hash = int(seal["row_id"]), int(seal["seq"]), bytes(seal["hash"])
            else:
                head = tx.one("audit_linked_head", until=self._boundary(tx))
                if head is None or head["hash"] is None:
                    return None
                last_id, seq, head_hash = int(head["id"]), None, bytes(head["hash"])
            last = tx.one("audit_checkpoint_last")
            now = tx.scalar("audit_clock")
            if last is not None and self._counts(tx, last, now) and (
                (last["last_id"] == last_id and last["seq"] == seq) or (now - last["at"]).total_seconds() < min_age
            ):
                return None
            mac = self._chain.checkpoint_mac(tx, now, last_id, head_hash, seq)
            cp_id = tx.scalar("audit_checkpoint_insert", at=now, last_id=last_id, seq=seq, head=head_hash, mac=mac)
            cp = Checkpoint(cp_id, now, last_id, head_hash, mac, seq)
            if self._events is not None:
                self._events.event(tx, "audit.checkpoint", cp.public())
        if self._events is not None:
            self._events.kick()
        _log.info("audit checkpoint #%s at %s: rows up to %s (seal %s), head %s, mac %s", cp.id,
                  cp.at.isoformat(), cp.last_id, cp.seq, cp.head.hex(), cp.mac.hex())
        return cp

    def _counts(self, tx: Tx, last: dict, now: datetime) -> bool:
        """Whether the newest stored checkpoint may stand in for a new one: authentic and not
        dated after ``now`` (a forged one must not silence every later checkpoint)."""
        if last["at"] > now:
            return False
        expected = self._chain.checkpoint_mac(tx, last["at"], last["last_id"], bytes(last["head"]), last["seq"])
        return hmac.compare_digest(bytes(last["mac"]), expected)

    def start(self, interval: float, seal_interval: float = 0.2) -> None:
        """Seal committed rows every ``seal_interval`` seconds and publish a checkpoint every
        ``interval`` seconds (first one after ``interval``), on one daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            next_checkpoint = time.monotonic() + interval
            failing = False
            while not self._stop.wait(seal_interval):
                try:
                    waiting = self._store.one("audit_unsealed_any")
                    if waiting is not None and waiting["waiting"]:
                        self.seal_all()
                    if time.monotonic() >= next_checkpoint:
                        next_checkpoint = time.monotonic() + interval
                        self.checkpoint(min_age=interval / 2)
                    failing = False
                except Exception as exc:  # noqa: BLE001 - the thread must outlive a database outage
                    if not failing:  # once per outage, not five times a second
                        _log.warning("audit sealing or checkpoint failed: %s", type(exc).__name__)
                    failing = True

        self._thread = threading.Thread(target=run, name="authsvc-audit-sealer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then seal what is committed: a replica shutting down, or a CLI
        command (which runs no thread) leaves its rows sealed rather than waiting for another
        process's next round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.seal_all()
        except Exception:  # noqa: BLE001 - best effort at shutdown (the next round anywhere seals it)
            pass
