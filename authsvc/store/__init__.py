"""Storage: named SQL on psycopg 3. The only package that imports psycopg.

Queries live in ``queries/*.sql`` under ``-- name: <query_name>`` headers, one file per group
of tables, each file run only by the typed module beside it (``outbox.py`` runs
``queries/outbox.sql``, see ``base.py``), whose rows are frozen dataclasses. A transaction
reaches them as attributes::

    with store.transaction() as tx:
        tx.outbox.insert("sms", sealed)

(files not yet given a module are still run by name: ``tx.one("account_by_email", ...)``.)
psycopg errors are turned into :mod:`authsvc.errors` (``UniqueViolation``,
``StoreUnavailable``, ``StoreError``) at this boundary.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests

from .. import errors
from .audit import Audit
from .base import QUERIES_DIR, parse
from .keys import Keys
from .outbox import Outbox

_log = logging.getLogger(__name__)


def load_queries(directory: Path = QUERIES_DIR) -> dict[str, str]:
    """Every named query of every file (names are unique across files: the EXPLAIN checks of
    tests/test_hot_paths.py find a query by its name alone)."""
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for name, body in parse(path).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            queries[name] = body
    return queries


QUERIES = load_queries()


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate psycopg failures into our exception family."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise errors.UniqueViolation(exc.diag.constraint_name) from exc
    except psycopg.OperationalError as exc:  # also the pool's PoolTimeout, TooManyRequests, PoolClosed
        raise errors.StoreUnavailable("database unavailable") from exc
    except _NOT_WRITABLE as exc:  # a standby, a recovery conflict: a failover under way
        raise errors.StoreUnavailable("database unavailable (not a writable primary)") from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction) as exc:
        raise errors.SchemaNotCurrent(exc.diag.message_primary or type(exc).__name__) from exc
    except psycopg.Error as exc:
        raise errors.StoreError(f"database error: {type(exc).__name__}") from exc


# What a server that is not (or no longer) a writable primary answers: a standby or a
# read-only primary refusing a write (25006), a query cancelled by a recovery conflict on a
# standby (40001 with that message; any 40001 is retryable), a server shutting down for a
# failover (57P01-57P03 are OperationalError already). These are a 503, never a 500.
_NOT_WRITABLE = (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.SerializationFailure)


def writable(conn: psycopg.Connection[Any], *, ask: bool = False) -> bool:
    """Whether ``conn`` is on a primary that accepts writes, whatever the URL asked for
    (``target_session_attrs``). PostgreSQL >= 14 reports both settings when the session starts
    (no round trip); otherwise, or with ``ask`` (a pooler replays the settings of the server
    connection it made first, which may be stale), the server is asked."""
    standby = None if ask else conn.info.parameter_status("in_hot_standby")
    read_only = None if ask else conn.info.parameter_status("default_transaction_read_only")
    if standby is None or read_only is None:
        row = conn.execute(
            "SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') AS ro"
        ).fetchone()
        assert row is not None  # a SELECT without FROM answers one row
        standby = "on" if (row["standby"] if isinstance(row, dict) else row[0]) else "off"
        read_only = row["ro"] if isinstance(row, dict) else row[1]
    return standby != "on" and read_only != "on"


class NotWritable(psycopg.OperationalError):
    """A connection reached a server that does not accept writes (a standby, a read-only primary)."""


# The listener's connection is idle for long stretches: keepalives find a silently dead peer
# (a failed-over host, a dropped NAT entry) in about 20 s instead of the kernel's hours.
_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}


@dataclass(frozen=True, eq=False)
class _Subscriber:
    channel: str
    on_notify: Callable[[str], None]
    on_state: Callable[[bool], None]


class Tx:
    """Runs named queries on one connection inside one transaction."""

    def __init__(
        self, conn: psycopg.Connection[DictRow], queries: dict[str, str], extensions: dict[str, Any] | None = None
    ) -> None:
        self._conn = conn
        self._queries = queries
        # per-Store collaborators that helpers called with only a transaction need
        # (the audit chain's key: services/platform/audit.py)
        self.extensions = extensions if extensions is not None else {}

    def _run(self, name: str, params: dict[str, Any]) -> psycopg.Cursor[DictRow]:
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

    # the tables, each through its module (made on first use in a transaction)
    @cached_property
    def audit(self) -> Audit:
        return Audit(self._conn)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self._conn)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self._conn)


class Store:
    """A psycopg pool behind a circuit breaker, so that a database outage costs milliseconds
    per request rather than the pool's wait, and recovery does not wait for its back-off.

    * Any sign that the database is gone (a connection attempt fails, a connection breaks
      mid-query, no connection within ``timeout``) opens the circuit: from then on every
      ``transaction()`` raises ``StoreUnavailable`` at once, without touching the network.
    * A prober thread closes the failed pool (waiting requests fail at once, its doubling
      reconnect back-off is dropped) and tries a fresh connection every ``probe_interval``
      seconds. When one succeeds on a writable primary it opens a NEW pool and closes the
      circuit, so service resumes within about ``probe_interval`` of the database answering
      again, however long the outage was.
    * Failover: only a writable primary closes the circuit or joins the pool, whatever the URL
      says (without ``target_session_attrs=read-write`` libpq takes the first host that
      answers, a standby included); a write refused as read-only opens the circuit, and such
      errors are ``StoreUnavailable`` (503), never a 500.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 1.0,
        connect_timeout: int = 2,
        probe_interval: float = 0.25,
        pooled: bool = False,
        direct_url: str | None = None,
    ) -> None:
        self.url = url
        # Behind a transaction pooler (PgBouncer pool_mode=transaction) a session is not ours
        # beyond one transaction: no server-side prepared statements (psycopg prepares a query
        # after 5 runs, and the next transaction may land on a server connection that lacks
        # it, or has another under that name), and LISTEN only on a direct connection.
        self.pooled = pooled
        self.direct_url = direct_url
        self._min_size, self._max_size, self._timeout = min_size, max_size, timeout
        # transactions of work that may arrive by the hundred at once hold at most half the pool
        self._crowd = threading.BoundedSemaphore(max(1, max_size // 2))
        self._connect_timeout = connect_timeout
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._down = False
        self._closing = threading.Event()
        self._prober: threading.Thread | None = None
        self._failed_pool: ConnectionPool[Any] | None = None
        self.extensions: dict[str, Any] = {}
        self._subscribers: list[_Subscriber] = []
        self._listener: threading.Thread | None = None
        self._deaf_logged = False
        self.pool = self._new_pool()
        self.pool.open(wait=False)

    # ------------------------------------------------------------------ the pool
    def _new_pool(self) -> ConnectionPool[Any]:
        store = self

        class _Connection(psycopg.Connection):
            @classmethod
            def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    conn = super().connect(*args, **kwargs)
                except psycopg.OperationalError:
                    store._trip("connection attempt failed")
                    raise
                try:
                    if not writable(conn, ask=store.pooled):
                        raise NotWritable("the server does not accept writes (a standby?)")
                except psycopg.Error:
                    conn.close()
                    store._trip("the server is not a writable primary")
                    raise
                return conn

        return ConnectionPool(
            self.url,
            connection_class=_Connection,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            max_waiting=4 * self._max_size,
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "connect_timeout": self._connect_timeout,
                **({"prepare_threshold": None} if self.pooled else {}),
            },
            open=False,
            name="authsvc",
        )

    @property
    def listen_url(self) -> str | None:
        """Where LISTEN goes: the direct URL, else the URL unless it leads to a transaction pooler."""
        return self.direct_url or (None if self.pooled else self.url)

    @property
    def available(self) -> bool:
        """False while the circuit is open (the database was found unreachable)."""
        return not self._down

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        if self._down:
            raise errors.StoreUnavailable("database unavailable")
        pool = self.pool
        try:
            with pool.connection() as conn:
                try:
                    yield conn
                except psycopg.OperationalError:
                    if conn.broken or conn.closed:
                        self._trip("connection lost")
                    raise
                except psycopg.errors.ReadOnlySqlTransaction:
                    # this pool's server turned read-only (demoted, or a read-only primary):
                    # fail fast until a writable primary answers
                    self._trip("the server refused a write (read-only)")
                    raise
        except (PoolTimeout, TooManyRequests):
            self._trip("no connection within the pool timeout")
            raise

    # ------------------------------------------------------------------ the circuit
    def _trip(self, reason: str) -> None:
        with self._lock:
            if self._down or self._closing.is_set():
                return
            self._down = True
            self._failed_pool = self.pool
            _log.warning("database unavailable (%s): failing fast until it answers again", reason)
            self._prober = threading.Thread(target=self._probe, name="authsvc-db-probe", daemon=True)
            self._prober.start()

    def _probe(self) -> None:
        failed, self._failed_pool = self._failed_pool, None
        if failed is not None:
            failed.close(timeout=self._connect_timeout + 1)  # fails its waiting clients at once
        started = time.monotonic()
        while not self._closing.is_set():
            try:
                with psycopg.connect(self.url, connect_timeout=self._connect_timeout, autocommit=True) as c:
                    if not writable(c, ask=self.pooled):  # a standby before its promotion: not yet
                        raise NotWritable("the server does not accept writes")
                fresh = self._new_pool()
                fresh.open(wait=True, timeout=self._connect_timeout)
            except (psycopg.Error, PoolTimeout, OSError):
                self._closing.wait(self._probe_interval)
                continue
            with self._lock:
                if self._closing.is_set():
                    fresh.close()
                    return
                self.pool = fresh
                self._down = False
            _log.warning("database answers again after %.1f s: serving", time.monotonic() - started)
            return

    # ------------------------------------------------------------------ API
    @contextmanager
    def transaction(self, *, crowd: bool = False) -> Iterator[Tx]:
        """One database transaction: committed when the block ends, rolled back on any error.

        ``crowd``: work that may arrive by the dozen at once, such as a sign-in's lookups
        before the hash gate (every thread of the gate pool may be doing one:
        ``AUTHSVC_GATE_THREADS``). Such transactions hold at most half the pool, so the rest is
        always there for a second-factor step, an introspection or anything else; one that
        waits longer than the pool's timeout for its turn is ``StoreUnavailable`` like a pool
        timeout."""
        with self._crowd_turn() if crowd else nullcontext(), wrap_errors(), self._connection() as conn, \
                conn.transaction():
            yield Tx(conn, QUERIES, self.extensions)

    @contextmanager
    def _crowd_turn(self) -> Iterator[None]:
        if not self._crowd.acquire(timeout=self._timeout):
            raise errors.StoreUnavailable("database busy")
        try:
            yield
        finally:
            self._crowd.release()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A pooled autocommit connection (for store-internal helpers such as ``migrate``)."""
        with wrap_errors(), self._connection() as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Tx]:
        """Statements each on its own (autocommit), no transaction around them: for a single
        statement, which is atomic by itself, this saves the BEGIN and COMMIT round trips of
        :meth:`transaction`."""
        with wrap_errors(), self._connection() as conn:
            yield Tx(conn, QUERIES, self.extensions)

    def one(self, query: str, /, **params: Any) -> dict[str, Any] | None:
        """Run one statement on its own (autocommit): a single statement is atomic by itself,
        and this saves the BEGIN and COMMIT round trips of :meth:`transaction`."""
        with wrap_errors(), self._connection() as conn:
            return Tx(conn, QUERIES).one(query, **params)

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def schema_status(self, directory: Path) -> Any:
        """Applied/pending/modified migrations (``migrate.Status``), over a pooled connection."""
        from . import migrate

        with self.connection() as conn:
            return migrate.status_of(conn, directory)

    def listen(self, channel: str, on_notify: Callable[[str], None], on_state: Callable[[bool], None]) -> None:
        """Deliver PostgreSQL notifications on ``channel`` (``pg_notify``) to ``on_notify(payload)``.

        Every channel of this store shares one listener thread and one connection of its own
        (outside the pool; to ``direct_url`` when set). Behind a transaction pooler without a
        direct URL nothing is ever delivered and ``on_state`` is never called. ``on_state(True)``
        is called once LISTEN on the channel is in place, ``on_state(False)`` whenever the
        connection is lost or cannot be made (notifications may have been missed from then on);
        the thread reconnects every ``probe_interval`` seconds
        until :meth:`close`. A cache built on this must only be trusted between
        ``on_state(True)`` and ``on_state(False)``.
        """
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", channel):
            raise ValueError(f"bad channel name {channel!r}")
        with self._lock:
            self._subscribers.append(_Subscriber(channel, on_notify, on_state))
            if self.listen_url is None:
                # through a transaction pooler LISTEN would seem to work and hear nothing:
                # never listening, the callers keep their caches short or off
                if not self._deaf_logged:
                    self._deaf_logged = True
                    _log.warning("notifications off: a transaction pooler and no direct URL "
                                 "(AUTHSVC_DATABASE_DIRECT_URL); caches of keys and clients stay short")
                return
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen_loop, name="authsvc-listen", daemon=True)
                self._listener.start()

    def _listen_loop(self) -> None:
        url = self.listen_url
        assert url is not None  # the listener is started only when there is one
        last_logged = float("-inf")
        while not self._closing.is_set():
            active: list[_Subscriber] = []
            try:
                with psycopg.connect(
                    url, connect_timeout=self._connect_timeout, autocommit=True, **_KEEPALIVES
                ) as conn:
                    channels: set[str] = set()
                    while not self._closing.is_set():
                        with self._lock:
                            new = [s for s in self._subscribers if not any(s is a for a in active)]
                        for sub in new:
                            if sub.channel not in channels:
                                conn.execute(f"LISTEN {sub.channel}")
                                channels.add(sub.channel)
                            active.append(sub)
                            sub.on_state(True)
                        # short waits, so that a channel added meanwhile is listened to quickly
                        for note in conn.notifies(timeout=0.25):
                            for sub in active:
                                if sub.channel == note.channel:
                                    sub.on_notify(note.payload)
            except psycopg.Error as exc:
                # logged when a working listener is lost, then at most once a minute while
                # the database stays unreachable (the circuit breaker reports the outage)
                now = time.monotonic()
                if not self._closing.is_set() and (active or now - last_logged >= 60):
                    last_logged = now
                    _log.warning("notification listener lost (%s); retrying", type(exc).__name__)
            finally:
                for sub in active:
                    sub.on_state(False)
            self._closing.wait(self._probe_interval)

    def close(self) -> None:
        self._closing.set()
        with self._lock:  # _trip makes and starts the prober under the lock: never join it unstarted
            prober = self._prober
        if prober is not None:
            prober.join(timeout=self._connect_timeout + 2)
        with self._lock:
            pool = self.pool
        pool.close()


def connect(url: str, **kwargs: Any) -> Store:
    return Store(url, **kwargs)


@contextmanager
def once(url: str, *, timeout: int = 3) -> Iterator[Tx]:
    """A short-lived autocommit connection (no pool), each statement on its own: for a process
    that must not hold connections across ``fork`` (the gunicorn master serving metrics)."""
    with wrap_errors(), psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=timeout) as conn:
        yield Tx(conn, QUERIES)


def diagnose(url: str, *, timeout: int = 2) -> str | None:
    """Why ``url`` cannot be reached, in PostgreSQL's or libpq's words (first line), or None
    when a connection works: for operator messages after a ``StoreUnavailable``."""
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return describe(exc)
    return None


def describe(exc: BaseException) -> str:
    """A psycopg error as one short line (no secrets: libpq never echoes the password)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else type(exc).__name__
    text = text.removeprefix("connection failed: ")
    return text[:300]
