"""What every aggregate module of the store is built on (the pattern of procrastinate's
``manager.py`` + ``sql/queries.sql``): the named statements of ONE ``.sql`` file, run only by
the class beside it, whose rows come back as frozen dataclasses.

* :class:`Queries` reads one file of ``queries/`` (``-- name: <query_name>`` headers). A class
  can only run the names of its own file, so each name has one caller;
  ``tests/test_store_queries.py`` checks that every name a class runs is defined and every name
  defined is run.
* :class:`Table` is the base of those classes: it runs one of its statements on the
  transaction's connection and turns the rows into its dataclasses (:func:`row_of`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg.rows import DictRow

QUERIES_DIR = Path(__file__).with_name("queries")
_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.M)

R = TypeVar("R")


def parse(path: Path) -> dict[str, str]:
    """The named statements of one file, in order."""
    queries: dict[str, str] = {}
    parts = _HEADER.split(path.read_text(encoding="utf-8"))
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice ({path.name})")
        queries[name] = body.strip().rstrip(";")
    return queries


class Queries(Mapping[str, str]):
    """The named statements of one ``queries/<file>``."""

    def __init__(self, filename: str, directory: Path = QUERIES_DIR) -> None:
        self.file = filename
        self._queries = parse(directory / filename)

    def __getitem__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.file}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)


_FACTORIES: dict[type, Any] = {}


def row_of(cls: type[R]) -> Callable[[psycopg.Cursor[Any]], Callable[[Sequence[Any]], R]]:
    """A psycopg row factory making ``cls`` (a dataclass) of each row: its fields are taken by
    column name and columns it does not declare are left out (a migration adding a column to a
    ``SELECT *`` table does not break a running release); a field no column fills is an error."""
    made: Callable[[psycopg.Cursor[Any]], Callable[[Sequence[Any]], R]] | None = _FACTORIES.get(cls)
    if made is not None:
        return made
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    def factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], R]:
        names = [c.name for c in cursor.description or ()]
        keep = [(i, n) for i, n in enumerate(names) if n in fields]

        def make(values: Sequence[Any]) -> R:
            return cls(**{n: values[i] for i, n in keep})

        return make

    _FACTORIES[cls] = factory
    return factory


class Table:
    """The base of a store class: one ``.sql`` file's statements, run on one transaction."""

    queries: ClassVar[Queries]

    def __init__(self, conn: psycopg.Connection[DictRow]) -> None:
        self._conn = conn

    def _one(self, cls: type[R], name: str, /, **params: Any) -> R | None:
        cur = self._conn.cursor(row_factory=row_of(cls))
        return cur.execute(self.queries[name], params).fetchone()

    def _all(self, cls: type[R], name: str, /, **params: Any) -> list[R]:
        cur = self._conn.cursor(row_factory=row_of(cls))
        return cur.execute(self.queries[name], params).fetchall()

    def _value(self, name: str, /, **params: Any) -> Any:
        """The first column of the first row (None without a row)."""
        row = self._conn.execute(self.queries[name], params).fetchone()
        return None if row is None else next(iter(row.values()))

    def _values(self, name: str, /, **params: Any) -> list[Any]:
        """The first column of every row."""
        return [next(iter(r.values())) for r in self._conn.execute(self.queries[name], params).fetchall()]

    def _run(self, name: str, /, **params: Any) -> int:
        """Run a statement; how many rows it changed."""
        return self._conn.execute(self.queries[name], params).rowcount
