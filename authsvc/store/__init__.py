"""Storage: named SQL on psycopg 3. The only package that imports psycopg.

Queries live in ``queries/*.sql`` under ``-- name: <query_name>`` headers and are run by name
inside a transaction::

    with store.transaction() as tx:
        row = tx.one("account_by_email", email_normalized=email)

psycopg errors are turned into :mod:`authsvc.errors` (``UniqueViolation``,
``StoreUnavailable``, ``StoreError``) at this boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import errors

_QUERIES_DIR = Path(__file__).with_name("queries")
_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.M)


def load_queries(directory: Path = _QUERIES_DIR) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = _HEADER.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2]):
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            queries[name] = body.strip().rstrip(";")
    return queries


QUERIES = load_queries()


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate psycopg failures into our exception family."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise errors.UniqueViolation(exc.diag.constraint_name) from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise errors.StoreUnavailable("database unavailable") from exc
    except psycopg.Error as exc:
        raise errors.StoreError(f"database error: {type(exc).__name__}") from exc


class Tx:
    """Runs named queries on one connection inside one transaction."""

    def __init__(self, conn: psycopg.Connection, queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def _run(self, name: str, params: dict[str, Any]) -> psycopg.Cursor:
        try:
            sql = self._queries[name]
        except KeyError:
            raise KeyError(f"no query named {name!r}") from None
        return self._conn.execute(sql, params)

    def one(self, query: str, /, **params: Any) -> dict[str, Any] | None:
        return self._run(query, params).fetchone()

    def all(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        return self._run(query, params).fetchall()

    def scalar(self, query: str, /, **params: Any) -> Any:
        row = self._run(query, params).fetchone()
        return None if row is None else next(iter(row.values()))

    def run(self, query: str, /, **params: Any) -> int:
        return self._run(query, params).rowcount


class Store:
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0) -> None:
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row, "autocommit": True},
            open=False,
            name="authsvc",
        )
        self.pool.open(wait=False)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One database transaction: committed when the block ends, rolled back on any error."""
        with wrap_errors():
            with self.pool.connection() as conn, conn.transaction():
                yield Tx(conn, QUERIES)

    def ping(self) -> None:
        with wrap_errors(), self.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self.pool.close()


def connect(url: str, **kwargs: Any) -> Store:
    return Store(url, **kwargs)
