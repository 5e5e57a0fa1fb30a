"""Verifying the audit log (the rules: ``audit.py``): the linked chain walked in id order, the
sealed chain in seal order, every stored checkpoint and the ones an operator gives, each row's
own MAC, copies, and rows no seal covers. ``AuditLog.verify`` seals first, then runs this."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from ... import errors
from ...store import Store, Tx
from ...store.audit import AuditRow
from .audit import (
    CHAIN_KEYED,
    CHAIN_LEGACY,
    CHAIN_UNLINKED,
    GENESIS,
    AuditChain,
    Checkpoint,
    legacy_digest,
    linked_boundary,
    row_body,
)


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


class ChainVerifier:
    """One verification of the log of ``store`` under ``chain``."""

    def __init__(self, store: Store, chain: AuditChain) -> None:
        self._store = store
        self._chain = chain

    def run(self, result: Verification, batch: int, external: Iterable[tuple[int, bytes]],
            unsealed_bound: float) -> Verification:
        """Fill in ``result`` (it may already carry notes): see ``AuditLog.verify``."""
        with self._store.transaction() as tx:
            try:
                self._chain.key(tx)
            except (errors.StoreError, errors.DecryptionError) as exc:
                result.problem = f"the audit chain key cannot be read ({exc.detail}): the log cannot be vouched for"
                return result
            stored = [Checkpoint(r.id, r.at, r.last_id, bytes(r.head), bytes(r.mac), r.seq)
                      for r in tx.audit.checkpoints()]
            for cp in stored:
                if not hmac.compare_digest(cp.mac, self._chain.checkpoint_mac(tx, cp.at, cp.last_id, cp.head, cp.seq)):
                    result.problem = f"checkpoint #{cp.id} is not authentic"
                    return result
            legacy_until = self._chain.legacy_until(tx)
            boundary = linked_boundary(tx, self._chain)
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
                rows = tx.audit.page(after, boundary, batch)
                for r in rows:
                    if next_wanted < len(pending) and pending[next_wanted] < r.id:
                        result.broken_at = r.id
                        result.problem = f"row {pending[next_wanted]} named by a checkpoint is missing"
                        return result
                    body = row_body(r.at, r.actor, r.action, r.account_id, r.detail)
                    stored_prev = bytes(r.prev_hash) if r.prev_hash is not None else None
                    if r.chain == CHAIN_KEYED:
                        expected = self._chain.row_mac(tx, prev, body)
                        unanchored = None  # this row's MAC covers every row before it
                    elif r.chain == CHAIN_LEGACY:
                        if r.id > legacy_until:
                            result.broken_at = r.id
                            result.problem = (f"row {r.id} is not keyed but was written after the chain key "
                                              "existed: a forgery")
                            return result
                        expected = legacy_digest(prev, body)
                        if unanchored is None:
                            unanchored = r.id
                    else:
                        result.broken_at, result.problem = r.id, f"row {r.id} has an unknown chain version"
                        return result
                    if stored_prev != prev or r.hash is None or not hmac.compare_digest(bytes(r.hash), expected):
                        result.broken_at = r.id
                        result.problem = f"row {r.id} was changed, or a row before it was added or removed"
                        return result
                    if next_wanted < len(pending) and pending[next_wanted] == r.id:
                        for label, head, seq in wanted[r.id]:
                            if seq is not None or not hmac.compare_digest(head, expected):
                                result.broken_at, result.problem = r.id, f"row {r.id} does not match {label}"
                                return result
                        next_wanted += 1
                        unanchored = None  # an authentic checkpoint covers every row up to here
                    prev, after = expected, r.id
                    result.checked += 1
                    result.legacy += r.chain == CHAIN_LEGACY
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
            duplicate = tx.audit.duplicate_mac()
            if duplicate is not None:
                result.problem = "a row of the log appears twice (the same MAC): a copy was added"
                return result
            unsealed = tx.audit.not_sealed(boundary)
            for u in unsealed:  # not in the chain yet, but a row must carry its own MAC at once
                problem = self._own_mac_problem(tx, u)
                if problem is not None:
                    result.broken_at, result.problem = u.id, problem
                    return result
        old = [u for u in unsealed if u.age is not None and float(u.age) > unsealed_bound]
        if old:
            result.broken_at = old[0].id
            result.problem = (f"{len(old)} row(s) from row {old[0].id} on are not sealed "
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
                seals = tx.audit.sealed_page(after, batch)
                for s in seals:
                    seq, row_id = int(s.seq), int(s.row_id)
                    if seq != after + 1:
                        result.broken_at = row_id
                        result.problem = f"seal {after + 1} is missing (the next is seal {seq}, of row {row_id})"
                        return None
                    sealed_row = s.row()
                    if sealed_row is None:
                        result.broken_at = row_id
                        result.problem = f"row {row_id} (seal {seq}) was removed"
                        return None
                    if row_id <= boundary:
                        result.broken_at = row_id
                        result.problem = f"seal {seq} names row {row_id} of the linked chain"
                        return None
                    problem = self._own_mac_problem(tx, sealed_row)
                    if problem is not None or sealed_row.hash is None:
                        result.broken_at, result.problem = row_id, problem
                        return None
                    row_hash = bytes(sealed_row.hash)
                    expected = self._chain.seal_mac(tx, prev, seq, row_id, row_hash)
                    if not hmac.compare_digest(bytes(s.seal), expected):
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

    def _own_mac_problem(self, tx: Tx, r: AuditRow) -> str | None:
        """What is wrong with a row after the linked chain, judged by its own MAC (None: nothing)."""
        row_id = r.id
        body = row_body(r.at, r.actor, r.action, r.account_id, r.detail)
        if r.chain == CHAIN_UNLINKED and r.nonce is not None:
            own = self._chain.unlinked_mac(tx, bytes(r.nonce), body)
        elif r.chain == CHAIN_KEYED and r.prev_hash is not None:
            # written by the previous version during a rolling upgrade: its MAC covers the
            # link it stored; its seal fixes its place
            own = self._chain.row_mac(tx, bytes(r.prev_hash), body)
        elif r.chain == CHAIN_LEGACY:
            return f"row {row_id} is not keyed but was written after the chain key existed: a forgery"
        else:
            own = None
        if own is None or r.hash is None or not hmac.compare_digest(bytes(r.hash), own):
            return f"row {row_id} was changed, or was added without the chain key"
        return None
