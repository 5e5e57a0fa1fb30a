"""The audit log's tables (queries/audit.sql): ``audit_log`` (unlinked rows, the linked chain),
the sealer's queue ``audit_unsealed``, ``audit_seals``, ``audit_chain_keys`` and
``audit_checkpoints``. The MACs are computed by services/audit.py; this only stores them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .base import Queries, Table


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row of ``audit_log`` (``nonce``: of an unlinked row; ``age``: seconds, by the database's
    clock, where the query asks for it)."""

    id: int
    at: datetime
    actor: str
    action: str
    account_id: Any  # uuid.UUID | None
    detail: Any  # the jsonb detail, decoded
    prev_hash: bytes | None
    hash: bytes | None
    chain: int
    nonce: bytes | None = None
    age: float | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """A row waiting for the sealer: its MAC (None: the row is gone), whether a seal covers it."""

    row_id: int
    hash: bytes | None
    sealed: bool


@dataclass(frozen=True, slots=True)
class Seal:
    seq: int
    row_id: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class SealedRow:
    """A seal with its row (the row's columns are None when the row is gone)."""

    seq: int
    row_id: int
    seal: bytes
    id: int | None
    at: datetime | None
    actor: str | None
    action: str | None
    account_id: Any
    detail: Any
    prev_hash: bytes | None
    hash: bytes | None
    chain: int | None
    nonce: bytes | None

    def row(self) -> AuditRow | None:
        """The sealed row (None: it is gone)."""
        if self.id is None or self.at is None or self.actor is None or self.action is None or self.chain is None:
            return None
        return AuditRow(self.id, self.at, self.actor, self.action, self.account_id, self.detail, self.prev_hash,
                        self.hash, self.chain, self.nonce)


@dataclass(frozen=True, slots=True)
class Head:
    id: int
    hash: bytes | None


@dataclass(frozen=True, slots=True)
class ChainKey:
    id: int
    key_enc: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    id: int
    at: datetime
    last_id: int
    seq: int | None
    head: bytes
    mac: bytes


class Audit(Table):
    queries = Queries("audit.sql")

    # ------------------------------------------------------------------ writing
    def insert(self, *, at: datetime, actor: str, action: str, account_id: str | None, detail: str,
               nonce: bytes, hash: bytes) -> None:
        """An unlinked row (no lock, no read of the head): a trigger queues it for the sealer."""
        self._run("audit_insert", at=at, actor=actor, action=action, account_id=account_id, detail=detail,
                  nonce=nonce, hash=hash)

    def tail(self, limit: int) -> list[AuditRow]:
        return self._all(AuditRow, "audit_tail", limit=limit)

    # ------------------------------------------------------------------ the chain key
    def lock(self) -> None:
        """The audit lock (only for making the chain key)."""
        self._value("audit_lock")

    def last_id(self) -> int | None:
        return self._value("audit_last_hash")

    def key(self) -> ChainKey | None:
        return self._one(ChainKey, "audit_key_get")

    def insert_key(self, key_enc: str) -> None:
        self._run("audit_key_insert", key_enc=key_enc)

    def rewrap_key(self, key_id: int, old: str, key_enc: str) -> int:
        return self._run("audit_key_rewrap", id=key_id, old=old, key_enc=key_enc)

    # ------------------------------------------------------------------ sealing
    def seal_lease(self) -> bool:
        """One sealer at a time, for this transaction (False: another one is sealing)."""
        return bool(self._value("audit_seal_lease"))

    def linked_until(self) -> int:
        return int(self._value("audit_linked_until") or 0)

    def linked_head(self, until: int) -> Head | None:
        return self._one(Head, "audit_linked_head", until=until)

    def queued(self, limit: int) -> list[Queued]:
        return self._all(Queued, "audit_unsealed_batch", limit=limit)

    def any_queued(self) -> bool:
        return bool(self._value("audit_unsealed_any"))

    def last_seal(self) -> Seal | None:
        return self._one(Seal, "audit_seal_last")

    def insert_seals(self, seqs: list[int], row_ids: list[int], hashes: list[bytes]) -> None:
        self._run("audit_seals_insert", seqs=seqs, row_ids=row_ids, hashes=hashes)

    def dequeue(self, row_ids: list[int]) -> None:
        self._run("audit_unsealed_done", row_ids=row_ids)

    # ------------------------------------------------------------------ verifying
    def page(self, after: int, until: int, limit: int) -> list[AuditRow]:
        """The linked chain (rows up to ``until``), in id order."""
        return self._all(AuditRow, "audit_page", after=after, until=until, limit=limit)

    def sealed_page(self, after: int, limit: int) -> list[SealedRow]:
        return self._all(SealedRow, "audit_sealed_page", after=after, limit=limit)

    def not_sealed(self, until: int) -> list[AuditRow]:
        """Rows after the linked chain that no seal covers, oldest first, with their age."""
        return self._all(AuditRow, "audit_not_sealed", until=until)

    def duplicate_mac(self) -> bytes | None:
        return self._value("audit_duplicate_mac")

    # ------------------------------------------------------------------ checkpoints
    def clock(self) -> datetime:
        now: datetime = self._value("audit_clock")
        return now

    def last_checkpoint(self) -> StoredCheckpoint | None:
        return self._one(StoredCheckpoint, "audit_checkpoint_last")

    def checkpoints(self) -> list[StoredCheckpoint]:
        return self._all(StoredCheckpoint, "audit_checkpoints_all")

    def insert_checkpoint(self, *, at: datetime, last_id: int, seq: int | None, head: bytes, mac: bytes) -> int:
        cp_id: int = self._value("audit_checkpoint_insert", at=at, last_id=last_id, seq=seq, head=head, mac=mac)
        return cp_id
