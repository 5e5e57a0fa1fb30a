"""An embedded PostgreSQL (PyPI's ``pgserver``) for ``serve --dev`` and the tests.

Used only when no ``AUTHSVC_DATABASE_URL`` is given. When run as root, pgserver creates a
system user ``pgserver`` and widens permissions so that user can read its binaries and the
data folder (``ensure_prefix_permissions``): keep the data folder outside private homes.
"""

from __future__ import annotations

import logging
from pathlib import Path

_log = logging.getLogger(__name__)


def start(pgdata: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) a server on ``pgdata`` and return a libpq URL for database ``postgres``."""
    try:
        import pgserver  # imported lazily: production never needs it (the `dev` extra)
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "the embedded PostgreSQL needs the dev extra (pip install -e '.[dev]'); "
            "or set AUTHSVC_DATABASE_URL"
        ) from None

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="delete" if delete_on_exit else "stop")
    _log.debug("embedded PostgreSQL running on %s", pgdata)
    return server.get_uri()
