"""Filling in the confusable skeleton of accounts made before it was stored (migration 0026).

Run by ``authsvc db upgrade`` (and ``serve --dev``) after the SQL migrations, because the
skeleton is computed in Python from the bundled Unicode data. Idempotent and resumable: it
only touches accounts whose skeleton is missing. Two accounts that already were look-alikes
of each other cannot both get theirs (the skeleton is unique): the later one keeps none and is
reported, for an operator to look at.
"""

from __future__ import annotations

import logging

from ... import errors
from ...store import Store
from . import contacts

_log = logging.getLogger("authsvc.services.email_skeletons")


def backfill(store: Store, *, batch: int = 500) -> tuple[int, list[str]]:
    """(accounts filled in, ids of accounts left without a skeleton because of a look-alike)."""
    filled, after = 0, None
    clashes: list[str] = []
    while True:
        with store.transaction() as tx:
            rows = tx.all("accounts_without_skeleton", after=after, limit=batch)
        if not rows:
            return filled, clashes
        for r in rows:
            after = str(r["id"])
            try:
                with store.transaction() as tx:
                    filled += tx.run("set_email_skeleton", id=after,
                                     email_skeleton=contacts.email_skeleton(r["email_normalized"]))
            except errors.UniqueViolation:
                clashes.append(after)
                _log.warning("account %s has a look-alike email of another account; left without a skeleton",
                             after)
