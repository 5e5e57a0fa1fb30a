"""Bounded password hashing with priority: every argon2 hash or verify on a request path.

Rules (API contract, "Known devices and the list attack", Overload):
- at most ``slots`` argon2 computations run at once in this process (argon2-cffi releases the
  GIL, so threads hash in parallel up to the cores given to this worker); the rest wait in
  a queue that is never unbounded:
- a request from an unknown device is refused at once with 503 ``busy`` and ``Retry-After``
  when its expected wait (work queued ahead of it times the measured hash time) is longer
  than ``budget`` seconds, and also when it has waited ``budget`` and is still not served
  (known devices may have gone ahead of it meanwhile);
- a request from a known device (one that presents a live device token of the account) goes
  ahead of every unknown one and waits up to ``known_budget``;
- the dummy verify for an unknown email passes through the same gate at the same cost, so
  neither timing nor a 503 tells a registered email from an unknown one.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol, TypeVar

from .. import errors
from ..security.passwords import PasswordHasher

_T = TypeVar("_T")
_EWMA_WEIGHT = 0.2  # weight of the newest hash time in the running estimate


class ShedCounter(Protocol):
    def __call__(self, known: bool) -> None: ...


class HashGate:
    """A priority gate with a bounded wait around a CPU-bound section."""

    def __init__(
        self,
        slots: int,
        budget: float,
        known_budget: float,
        *,
        on_shed: ShedCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.budget = budget
        self.known_budget = known_budget
        self._on_shed = on_shed
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._known: deque[object] = deque()
        self._unknown: deque[object] = deque()
        self._cost: float | None = None  # running estimate of one computation, seconds

    # ------------------------------------------------------------------ observation
    @property
    def cost(self) -> float | None:
        return self._cost

    def state(self) -> dict[str, int]:
        with self._cond:
            return {"running": self._running, "known_waiting": len(self._known),
                    "unknown_waiting": len(self._unknown)}

    # ------------------------------------------------------------------ the gate
    def _expected_wait(self, ahead: int) -> float:
        """Seconds until a newcomer with ``ahead`` waiters in front of it gets a slot."""
        if self._cost is None:
            return 0.0
        rounds = math.ceil((self._running + ahead + 1 - self.slots) / self.slots)
        return max(0, rounds) * self._cost

    def _head(self) -> object | None:
        if self._known:
            return self._known[0]
        return self._unknown[0] if self._unknown else None

    def _shed(self, known: bool, wait: float) -> errors.Busy:
        if self._on_shed is not None:
            self._on_shed(known)
        return errors.Busy(max(1, math.ceil(wait)))

    @contextmanager
    def slot(self, *, known: bool) -> Iterator[None]:
        with self._cond:
            if self._running < self.slots and self._head() is None:
                self._running += 1
            else:
                queue = self._known if known else self._unknown
                budget = self.known_budget if known else self.budget
                ahead = len(self._known) + (0 if known else len(self._unknown))
                expected = self._expected_wait(ahead)
                if expected > budget:
                    raise self._shed(known, expected)
                ticket = object()
                queue.append(ticket)
                deadline = self._clock() + budget
                try:
                    while not (self._running < self.slots and self._head() is ticket):
                        remaining = deadline - self._clock()
                        if remaining <= 0:
                            raise self._shed(known, self._expected_wait(len(self._known) + len(self._unknown)))
                        self._cond.wait(remaining)
                finally:
                    queue.remove(ticket)
                    self._cond.notify_all()  # the next head may go now (or after we left)
                self._running += 1
        started = self._clock()
        try:
            yield
        finally:
            took = self._clock() - started
            with self._cond:
                self._running -= 1
                self._cost = took if self._cost is None else (1 - _EWMA_WEIGHT) * self._cost + _EWMA_WEIGHT * took
                self._cond.notify_all()


class GatedHasher:
    """The password hasher every request path uses: argon2id behind a :class:`HashGate`.

    ``known`` is True only for a request that presents a live device token of the account
    (or that already proved both factors, as a password change or a completed reset does).

    The computation itself runs on one of ``gate.slots`` hashing threads of this process, never
    on the request thread: argon2 mallocs its whole working block (19 MiB by default) per
    computation, and glibc keeps a freed block in the arena of the thread that used it. With
    hashes on the request threads, every one of a worker's threads kept a block (measured:
    ~170 MiB per worker); giving the blocks back to the OS after each hash instead cost ~4,900
    page faults and ~10 ms of kernel CPU per verify (half again argon2's own 20 ms). On a few
    dedicated threads the blocks are reused: resident memory is at most ``slots`` blocks and a
    verify costs what argon2 costs. The gate admits at most ``slots`` computations at once,
    so a computation never waits for a hashing thread.
    """

    def __init__(self, hasher: PasswordHasher, gate: HashGate) -> None:
        self.hasher = hasher
        self.gate = gate
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        if self._pool is None or self._pool_pid != os.getpid():  # none yet, or forked
            with self._pool_lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    self._pool = ThreadPoolExecutor(self.gate.slots, thread_name_prefix="argon2")
                    self._pool_pid = os.getpid()
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        """Let the hashing threads end (a computation in progress finishes first)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def hash(self, password: str, *, known: bool = False) -> str:
        with self.gate.slot(known=known):
            return self._run(self.hasher.hash, password)

    def verify(self, stored_hash: str, password: str, *, known: bool = False) -> bool:
        with self.gate.slot(known=known):
            return self._run(self.hasher.verify, stored_hash, password)

    def dummy_verify(self, password: str, *, known: bool = False) -> None:
        with self.gate.slot(known=known):
            self._run(self.hasher.dummy_verify, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.needs_rehash(stored_hash)
