"""Plain-SQL migrations from ``migrations/NNNN_name.sql``.

``upgrade`` applies the pending files in order, each in its own transaction, under a
PostgreSQL advisory lock so that instances starting at once do not race; it is idempotent.
A migration that was applied and later edited is reported (checksum mismatch) rather than
silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .. import errors
from . import wrap_errors

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x61757468737663  # "authsvc"

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    applied: list[str]
    pending: list[str]
    modified: list[str]

    @property
    def current(self) -> bool:
        return not self.pending and not self.modified


def discover(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise errors.ConfigError(f"migrations folder {directory} does not exist")
    found = []
    for path in sorted(directory.iterdir()):
        m = _FILE.match(path.name)
        if m:
            found.append(Migration(m.group(1), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise errors.ConfigError("two migrations share a version number")
    return found


def _applied(conn: psycopg.Connection[Any]) -> dict[str, str]:
    cur = conn.cursor(row_factory=tuple_row)  # the pool's connections make dict rows
    row = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    exists = row[0]
    if not exists:
        return {}
    return dict(cur.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def status(url: str, directory: Path) -> Status:
    with wrap_errors(), psycopg.connect(url, connect_timeout=5) as conn:
        return status_of(conn, directory)


def status_of(conn: psycopg.Connection[Any], directory: Path) -> Status:
    """The same, on a connection the caller holds (the service's pool, for ``/readyz``)."""
    migrations = discover(directory)
    applied = _applied(conn)
    return Status(
        applied=[m.version for m in migrations if m.version in applied],
        pending=[f"{m.version}_{m.name}" for m in migrations if m.version not in applied],
        modified=[
            f"{m.version}_{m.name}"
            for m in migrations
            if m.version in applied and applied[m.version] != m.checksum
        ],
    )


def upgrade(url: str, directory: Path) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when already current)."""
    migrations = discover(directory)
    done: list[str] = []
    with wrap_errors(), psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOTSTRAP)
            applied = _applied(conn)
            for m in migrations:
                if m.version in applied:
                    continue
                with conn.transaction():
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                done.append(f"{m.version}_{m.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done
