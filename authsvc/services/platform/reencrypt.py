"""Retiring an encryption key: what still depends on each key id, and re-encryption under the
newest key (``authsvc keys usage`` and ``authsvc keys reencrypt``).

Rules:
- Every ciphertext the service stores names its key id (``v1.<kid>.<data>``): TOTP secrets,
  the private halves of signing keys, undelivered outbox payloads and the audit chain key.
  ``usage`` counts them per key id, so an operator sees when an old key is no longer needed
  and can be removed from ``AUTHSVC_ENCRYPTION_KEY``.
- ``reencrypt`` decrypts each one with whichever configured key made it and encrypts it under
  the first (newest) key, with the same associated data, in batches of one transaction each.
  Each row is swapped only if it still holds the ciphertext that was read (compare and swap),
  so a concurrent change (a delivery, a new secret) is never overwritten. The run is
  resumable: it only ever looks at rows not yet under the newest key, so a rerun after a crash
  or Ctrl+C continues where it stopped.
- A row that no configured key can decrypt is counted and left alone (reported, never
  dropped). The run is audited (start and end, with the operator's reason and the counts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ... import errors
from ...security.contexts import ENCRYPTED_COLUMNS
from ...security.crypto import Cipher
from ...store import Store, Tx
from .audit import AuditChain, audit


@dataclass
class ReencryptReport:
    kid: str
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.done.values())


class Reencryption:
    def __init__(self, *, store: Store, cipher: Cipher, chain: AuditChain) -> None:
        self._store = store
        self._cipher = cipher
        self._chain = chain

    def usage(self) -> dict[str, dict[str, int]]:
        """``{kid: {what: rows}}`` over every kind of stored ciphertext."""
        with self._store.transaction() as tx:
            rows = tx.all("key_usage")
        usage: dict[str, dict[str, int]] = {}
        for r in rows:
            usage.setdefault(r["kid"], {})[r["what"]] = int(r["n"])
        return usage

    def reencrypt(
        self, *, operator: str, reason: str, batch_size: int = 500, on_batch: Callable[[str, int], None] | None = None
    ) -> ReencryptReport:
        kid = self._cipher.current_kid
        report = ReencryptReport(kid)
        with self._store.transaction() as tx:
            audit(tx, f"operator:{operator}", "keys.reencrypt_started", None, kid=kid, reason=reason,
                  pending=self._pending(tx, kid))
        for target in ENCRYPTED_COLUMNS:
            done = failed = 0
            after = target.first_cursor
            while True:
                with self._store.transaction() as tx:
                    rows = tx.all(target.batch_query, kid=kid, after=after, limit=batch_size)
                    if not rows:
                        break
                    for row in rows:
                        try:
                            plain = self._cipher.decrypt(row["sealed"], aad=target.aad(row))
                        except errors.DecryptionError:
                            failed += 1
                            continue
                        done += tx.run(target.update_query, id=row["id"], old=row["sealed"],
                                       new=self._cipher.encrypt(plain, aad=target.aad(row)))
                    after = rows[-1]["id"]
                if on_batch:
                    on_batch(target.name, len(rows))
            report.done[target.name], report.failed[target.name] = done, failed
        with self._store.transaction() as tx:
            try:
                report.done["audit_chain_key"] = self._chain.rewrap(tx)
                report.failed["audit_chain_key"] = 0
            except errors.DecryptionError:
                report.done["audit_chain_key"], report.failed["audit_chain_key"] = 0, 1
            audit(tx, f"operator:{operator}", "keys.reencrypted", None, kid=kid, reason=reason,
                  reencrypted=report.done, undecryptable=report.failed, remaining=self._pending(tx, kid))
        return report

    @staticmethod
    def _pending(tx: Tx, kid: str) -> dict[str, int]:
        """Rows not yet under ``kid``, by kind."""
        pending: dict[str, int] = {}
        for r in tx.all("key_usage"):
            if r["kid"] != kid:
                pending[r["what"]] = pending.get(r["what"], 0) + int(r["n"])
        return pending
