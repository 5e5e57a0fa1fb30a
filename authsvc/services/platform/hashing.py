"""Bounded password hashing with priority: every argon2 hash or verify on a request path.

Rules (README, "Holding against the list attack (credential stuffing)", "Strangers are not one
class"):
- at most ``slots`` argon2 computations run at once in this process (argon2-cffi releases the
  GIL, so threads hash in parallel up to the cores given to this worker); the rest wait in
  a queue that is never unbounded;
- every waiting request has a *standing* (see ``throttle.Throttle.admit``), and the better
  standing goes first: a known device (a live device token of the account), then a stranger
  coming back after the ``Retry-After`` of an earlier 503 (``returning``), then other strangers,
  fewer recent failures behind them first, then, during an attack only, traffic whose client,
  network or email keeps failing (``failing``); equal standings are served in arrival order;
- a request is refused at once with 503 ``busy`` and ``Retry-After`` when the work queued
  *ahead of it* (only better or equal standings: those behind it never delay it) would take
  the cores longer than its budget: seconds for a person (``budget``, ``known_budget``), a
  fraction of a second for failing traffic (``failing_budget``); so a wave that the cores can
  hash within the budget is served, never shed. It is also refused when it has waited its
  budget and is still not served (better standings may have gone ahead of it meanwhile);
- failing traffic may hold at most ``failing_room`` waiting places per process, so an attack
  cannot tie up the threads that serve everyone else;
- the dummy verify for an unknown email passes through the same gate at the same cost, so
  neither timing nor a 503 tells a registered email from an unknown one.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ... import errors
from ...security.passwords import PasswordHasher

_T = TypeVar("_T")
_EWMA_WEIGHT = 0.2  # weight of the newest hash time in the running estimate


@dataclass(frozen=True)
class Standing:
    """Where a request stands at the gate: lower ``rank`` goes first, then lower ``score``
    (recent failures behind it), then earlier arrival."""

    name: str  # known | returning | stranger | failing
    rank: int
    score: float = 0.0


KNOWN = Standing("known", 0)
STRANGER = Standing("stranger", 2)


def returning(score: float = 0.0) -> Standing:
    return Standing("returning", 1, score)


def stranger(score: float = 0.0) -> Standing:
    return Standing("stranger", 2, score)


def failing(score: float) -> Standing:
    return Standing("failing", 3, score)


class ShedCounter(Protocol):
    def __call__(self, standing: Standing) -> None: ...


@dataclass
class Timing:
    seconds: float | None = None


@dataclass(eq=False)
class _Waiter:
    standing: Standing
    seq: int
    wake: threading.Condition
    key: tuple[int, float, int] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.standing.rank, self.standing.score, self.seq)


class HashGate:
    """A priority gate with a bounded wait around a CPU-bound section.

    Waiters are kept sorted by (rank, score, arrival), and each has a condition of its own on
    the gate's lock: a freed slot wakes the head only, so hundreds of waiting threads cost
    nothing while they wait (a shared condition woke every one of them on every hash)."""

    def __init__(
        self,
        slots: int,
        budget: float,
        known_budget: float,
        *,
        failing_budget: float | None = None,
        failing_room: int | None = None,
        on_shed: ShedCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.budget = budget
        self.known_budget = known_budget
        self.failing_budget = min(budget, failing_budget) if failing_budget is not None else budget
        self.failing_room = failing_room if failing_room is not None else slots
        self._on_shed = on_shed
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: list[_Waiter] = []  # sorted by key: the head is [0]
        self._failing_waiting = 0
        self._seq = itertools.count()
        self._cost: float | None = None  # running estimate of one computation, seconds

    # ------------------------------------------------------------------ observation
    @property
    def cost(self) -> float | None:
        return self._cost

    def state(self) -> dict[str, int]:
        with self._lock:
            known = sum(w.standing.rank == 0 for w in self._waiting)
            return {"running": self._running, "known_waiting": known,
                    "unknown_waiting": len(self._waiting) - known}

    # ------------------------------------------------------------------ the gate
    def budget_for(self, standing: Standing) -> float:
        if standing.rank == 0:
            return self.known_budget
        return self.failing_budget if standing.name == "failing" else self.budget

    def _expected_wait(self, ahead: int) -> float:
        """Seconds until a newcomer with ``ahead`` waiters in front of it gets a slot."""
        if self._cost is None:
            return 0.0
        rounds = math.ceil((self._running + ahead + 1 - self.slots) / self.slots)
        return max(0, rounds) * self._cost

    def _shed(self, standing: Standing, wait: float) -> errors.Busy:
        if self._on_shed is not None:
            self._on_shed(standing)
        return errors.Busy(max(1, math.ceil(wait)))

    def _wake_head(self) -> None:
        if self._waiting and self._running < self.slots:
            self._waiting[0].wake.notify()

    @contextmanager
    def slot(self, *, known: bool = False, standing: Standing | None = None) -> Iterator[Timing]:
        """Hold one of the slots for a computation. The caller may set the yielded
        ``Timing.seconds`` to what the computation itself took (measured on the thread that ran
        it); otherwise the time the slot was held counts, which also holds the request
        thread's wait to take the GIL back: with many threads busy in Python that doubled the
        estimate and shed waves that the cores could hash within budget."""
        standing = KNOWN if known else (standing or STRANGER)
        with self._lock:
            if self._running < self.slots and not self._waiting:
                self._running += 1
            else:
                me = _Waiter(standing, next(self._seq), threading.Condition(self._lock))
                budget = self.budget_for(standing)
                ahead = bisect.bisect_left(self._waiting, me.key, key=_key)
                expected = self._expected_wait(ahead)
                if expected > budget:
                    raise self._shed(standing, expected)
                is_failing = standing.name == "failing"
                if is_failing and self._failing_waiting >= self.failing_room:
                    raise self._shed(standing, max(expected, self._expected_wait(len(self._waiting))))
                self._waiting.insert(ahead, me)
                self._failing_waiting += is_failing
                deadline = self._clock() + budget
                try:
                    while not (self._running < self.slots and self._waiting[0] is me):
                        remaining = deadline - self._clock()
                        if remaining <= 0:
                            raise self._shed(standing, self._expected_wait(len(self._waiting)))
                        me.wake.wait(remaining)
                finally:
                    del self._waiting[bisect.bisect_left(self._waiting, me.key, key=_key)]
                    self._failing_waiting -= is_failing
                    self._wake_head()  # leaving the head: the next may go (spurious wakes are harmless)
                self._running += 1
        started = self._clock()
        timing = Timing()
        try:
            yield timing
        finally:
            took = timing.seconds if timing.seconds is not None else self._clock() - started
            with self._lock:
                self._running -= 1
                self._cost = took if self._cost is None else (1 - _EWMA_WEIGHT) * self._cost + _EWMA_WEIGHT * took
                self._wake_head()


def _key(waiter: _Waiter) -> tuple[int, float, int]:
    return waiter.key


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

    def _run(self, timing: Timing, fn: Callable[..., _T], *args: str) -> _T:
        if self._pool is None or self._pool_pid != os.getpid():  # none yet, or forked
            with self._pool_lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    self._pool = ThreadPoolExecutor(self.gate.slots, thread_name_prefix="argon2")
                    self._pool_pid = os.getpid()

        def timed() -> _T:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                timing.seconds = time.perf_counter() - started

        return self._pool.submit(timed).result()

    def close(self) -> None:
        """Let the hashing threads end (a computation in progress finishes first)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def hash(self, password: str, *, known: bool = False, standing: Standing | None = None) -> str:
        with self.gate.slot(known=known, standing=standing) as timing:
            return self._run(timing, self.hasher.hash, password)

    def verify(self, stored_hash: str, password: str, *, known: bool = False,
               standing: Standing | None = None) -> bool:
        with self.gate.slot(known=known, standing=standing) as timing:
            return self._run(timing, self.hasher.verify, stored_hash, password)

    def dummy_verify(self, password: str, *, known: bool = False, standing: Standing | None = None) -> None:
        with self.gate.slot(known=known, standing=standing) as timing:
            self._run(timing, self.hasher.dummy_verify, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.needs_rehash(stored_hash)
