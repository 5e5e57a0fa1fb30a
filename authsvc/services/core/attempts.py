"""Wrong answers to one-time things: each counts, and the thing dies after a limit.

Every one-time thing that takes a guessable answer (an mfa_token, a registration, a password
reset, a contact change, a step-up challenge, a pending TOTP factor) follows one rule:

- the caller locks the live row (``lock_live_*``, ``FOR UPDATE``), and a wrong answer is one
  atomic statement on it (its ``*_failed`` query: ``UPDATE ... RETURNING``) that adds one to the
  count and, at ``max_attempts``, ends the thing;
- the failed attempt is committed although the request fails: the caller notes the failure,
  lets its transaction COMMIT and raises only after it (raising inside the ``with`` block would
  roll the count back and give the guesser a free try).
"""

from __future__ import annotations

from ...store import Tx


def failed_attempt(tx: Tx, query: str, thing_id: str, *, max_attempts: int) -> bool:
    """Count one wrong answer with the named ``*_failed`` query; True when the thing is now
    dead (also when it no longer was live to count on)."""
    row = tx.one(query, id=thing_id, max_attempts=max_attempts)
    return row is None or bool(row["dead"])
