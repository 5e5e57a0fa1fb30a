"""The audit log as a service (the rules: ``audit.py``): reading its tail, sealing committed rows
into the chain, publishing signed checkpoints, the sealer thread every replica runs, and
verification (``audit_verify.py``)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Protocol

from ... import errors
from ...store import Store, Tx
from ...store.audit import StoredCheckpoint
from .audit import GENESIS, UNSEALED_BOUND, AuditChain, Checkpoint, linked_boundary
from .audit_verify import ChainVerifier, Verification

_log = logging.getLogger("authsvc.services.audit")  # the name its log lines always had


class EventSink(Protocol):
    def event(self, tx: Tx, event_type: str, data: dict) -> None: ...

    def kick(self) -> None: ...


class AuditLog:
    def __init__(self, store: Store, chain: AuditChain, events: EventSink | None = None) -> None:
        self._store = store
        self._chain = chain
        self._events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tail(self, limit: int = 20) -> list[dict]:
        with self._store.transaction() as tx:
            return [asdict(r) for r in tx.audit.tail(limit)]

    # ------------------------------------------------------------------ sealing
    def seal(self, limit: int = 2000) -> int:
        """One round: link the committed, queued rows into the chain (``audit_seals``), oldest
        id first. Returns how many were sealed; 0 when another process holds the sealing lease
        right now (it is sealing) or nothing waits."""
        with self._store.transaction() as tx:
            if not tx.audit.seal_lease():
                return 0
            queued = tx.audit.queued(limit)
            if not queued:
                return 0
            boundary = linked_boundary(tx, self._chain)
            rows = [q for q in queued if q.row_id > boundary and q.hash is not None and not q.sealed]
            last = tx.audit.last_seal()
            if last is not None:
                prev, seq = bytes(last.hash), int(last.seq)
            else:
                head = tx.audit.linked_head(boundary)
                prev, seq = (bytes(head.hash) if head and head.hash is not None else GENESIS), 0
            seqs, row_ids, hashes = [], [], []
            for r in rows:
                seq += 1
                assert r.hash is not None  # filtered above
                prev = self._chain.seal_mac(tx, prev, seq, r.row_id, bytes(r.hash))
                seqs.append(seq)
                row_ids.append(r.row_id)
                hashes.append(prev)
            if seqs:
                tx.audit.insert_seals(seqs, row_ids, hashes)
            # rows of the linked chain (or gone, or without a hash) leave the queue unsealed:
            # verify walks those through the linked chain, or reports them
            tx.audit.dequeue([q.row_id for q in queued])
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
        return ChainVerifier(self._store, self._chain).run(result, batch, external, unsealed_bound)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, *, min_age: float = 0.0) -> Checkpoint | None:
        """Sign and publish the chain head (the newest seal; before any, the newest row of the
        linked chain). Skipped (None) when the log is empty, when the last checkpoint already
        covers the head, or when it is younger than ``min_age`` seconds (several processes run
        this on a timer). Seals what is committed first."""
        self.seal_all()
        with self._store.transaction() as tx:
            seal = tx.audit.last_seal()
            seq: int | None
            if seal is not None:
                last_id, seq, head_hash = int(seal.row_id), int(seal.seq), bytes(seal.hash)
            else:
                head = tx.audit.linked_head(linked_boundary(tx, self._chain))
                if head is None or head.hash is None:
                    return None
                last_id, seq, head_hash = int(head.id), None, bytes(head.hash)
            last = tx.audit.last_checkpoint()
            now = tx.audit.clock()
            if last is not None and self._counts(tx, last, now) and (
                (last.last_id == last_id and last.seq == seq) or (now - last.at).total_seconds() < min_age
            ):
                return None
            mac = self._chain.checkpoint_mac(tx, now, last_id, head_hash, seq)
            cp_id = tx.audit.insert_checkpoint(at=now, last_id=last_id, seq=seq, head=head_hash, mac=mac)
            cp = Checkpoint(cp_id, now, last_id, head_hash, mac, seq)
            if self._events is not None:
                self._events.event(tx, "audit.checkpoint", cp.public())
        if self._events is not None:
            self._events.kick()
        _log.info("audit checkpoint #%s at %s: rows up to %s (seal %s), head %s, mac %s", cp.id,
                  cp.at.isoformat(), cp.last_id, cp.seq, cp.head.hex(), cp.mac.hex())
        return cp

    def _counts(self, tx: Tx, last: StoredCheckpoint, now: datetime) -> bool:
        """Whether the newest stored checkpoint may stand in for a new one: authentic and not
        dated after ``now`` (a forged one must not silence every later checkpoint)."""
        if last.at > now:
            return False
        expected = self._chain.checkpoint_mac(tx, last.at, last.last_id, bytes(last.head), last.seq)
        return hmac.compare_digest(bytes(last.mac), expected)

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
                    with self._store.autocommit() as tx:
                        waiting = tx.audit.any_queued()
                    if waiting:
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
