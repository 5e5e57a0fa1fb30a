"""Short-lived counters for throttling: Redis (shared by every worker and instance) or memory.

Redis is a plain URL (``redis://``, ``rediss://``, ``unix://``) or a Sentinel-watched service
(``redis+sentinel://sentinel-a:26379,sentinel-b:26379/mymaster``): the master is found through
the Sentinels and found again after their failover.

A small interface, ``CounterStore``, with two implementations. ``FallbackCounters`` puts the
memory store behind Redis: when Redis fails, each operation is answered from process memory
(logged, and counted through ``on_fallback``), so throttling gets weaker but never fails open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import redis

from ..config import sentinel_parts

_log = logging.getLogger(__name__)


class CounterStore(Protocol):
    def incr(self, key: str, ttl: int) -> int:
        """Add one to ``key`` (created with ``ttl`` seconds to live); the new value."""

    def get_many(self, keys: list[str]) -> list[int]:
        """Integer values (0 for missing keys)."""

    def peek(self, live: list[str], values: list[str], enter: Sequence[str] = (), ttl: int = 1
             ) -> tuple[list[float], list[int], list[int]]:
        """``remaining(live)``, ``get_many(values)`` and, first, one added to each ``enter`` key
        (created with ``ttl``), all at one instant (no other operation in between) and in one
        round trip; returns the three lists."""

    def move(self, up: list[str], up_ttl: int, down: list[str], read: Sequence[str] = (),
             put: tuple[str, str, int] | None = None) -> list[int]:
        """At one instant and in one round trip: add one to each ``up`` key (created with
        ``up_ttl``), take one from each ``down`` key, read the ``read`` keys and set ``put``
        (key, value, ttl); the new values of ``up``, then the values of ``read`` (0 for missing
        keys)."""


    def put(self, key: str, value: str, ttl: int) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds."""

    def put_new(self, key: str, value: str, ttl: int) -> bool:
        """Set ``key`` only when absent; whether it was set."""

    def remaining(self, keys: list[str]) -> list[float]:
        """Seconds each key still lives (0 for missing keys)."""

    def delete(self, keys: list[str]) -> int:
        """Delete keys; how many existed."""

    def scan(self, prefix: str) -> list[tuple[str, str, float]]:
        """(key, value, seconds left) of every key starting with ``prefix``."""


def redis_client(url: str, *, timeout: float) -> redis.Redis:
    """A client of the Redis at ``url``: ``redis://``, ``rediss://``, ``unix://``, or the
    current master of a Sentinel-watched service (``redis+sentinel://``), found again after a
    Sentinel failover."""
    options = redis_options(timeout)
    if url.startswith("redis+sentinel:"):
        from redis.sentinel import Sentinel

        sentinels, service, username, password = sentinel_parts(url)
        auth = {k: v for k, v in (("username", username), ("password", password)) if v}
        sentinel = Sentinel(sentinels, sentinel_kwargs={**options, **auth})
        return sentinel.master_for(service, decode_responses=True, **options, **auth)
    return redis.Redis.from_url(url, decode_responses=True, **options)


def redis_options(timeout: float) -> dict:
    """Client options for a Redis that may be down: fail within ``timeout``, no retries (the
    client's default retries with back-off took ~10 s per operation), so the caller's fallback
    answers at once."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}


# ``peek`` and ``move`` each run as one Lua script: atomic like MULTI, and one command to encode
# and one reply to parse instead of a dozen (redis-py's pure-Python protocol code was half the
# CPU of a refused sign-in). KEYS: enter, live, values. ARGV: #enter, #live, ttl.
_PEEK = """
local ne, nl, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local entered, left, got = {}, {}, {}
for i = 1, ne do
  redis.call('SET', KEYS[i], 0, 'EX', ttl, 'NX')
  entered[i] = redis.call('INCR', KEYS[i])
end
for i = 1, nl do left[i] = redis.call('PTTL', KEYS[ne + i]) end
if #KEYS > ne + nl then
  local values = redis.call('MGET', unpack(KEYS, ne + nl + 1, #KEYS))
  for i = 1, #values do got[i] = values[i] or 0 end
end
return {entered, left, got}
"""
# KEYS: up, down, [put], read. ARGV: #up, #down, up ttl, put?, [put value, put ttl].
_MOVE = """
local nu, nd, ttl, np = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local ups, got = {}, {}
for i = 1, nu do
  redis.call('SET', KEYS[i], 0, 'EX', ttl, 'NX')
  ups[i] = redis.call('INCR', KEYS[i])
end
for i = 1, nd do redis.call('DECR', KEYS[nu + i]) end
if np == 1 then redis.call('SET', KEYS[nu + nd + 1], ARGV[5], 'EX', ARGV[6]) end
if #KEYS > nu + nd + np then
  local values = redis.call('MGET', unpack(KEYS, nu + nd + np + 1, #KEYS))
  for i = 1, #values do got[i] = values[i] or 0 end
end
return {ups, got}
"""


class RedisCounters:
    def __init__(self, url: str, *, timeout: float = 0.25) -> None:
        self._redis = redis_client(url, timeout=timeout)
        # EVALSHA, loading the script again when the server has lost it (a restart, a failover)
        self._peek = self._redis.register_script(_PEEK)
        self._move = self._redis.register_script(_MOVE)

    def incr(self, key: str, ttl: int) -> int:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=max(1, int(ttl)), nx=True)  # the first count sets the lifetime
        pipe.incr(key)
        return int(pipe.execute()[1])

    def get_many(self, keys: list[str]) -> list[int]:
        return [int(v) if v is not None else 0 for v in cast(list[str | None], self._redis.mget(keys))] if keys else []

    def peek(self, live: list[str], values: list[str], enter: Sequence[str] = (), ttl: int = 1
             ) -> tuple[list[float], list[int], list[int]]:
        entered, left, got = cast(list[list[Any]], self._peek(
            keys=[*enter, *live, *values], args=[len(enter), len(live), max(1, int(ttl))]))
        return [max(0, ms) / 1000 for ms in left], [int(v) if v else 0 for v in got], [int(v) for v in entered]

    def move(self, up: list[str], up_ttl: int, down: list[str], read: Sequence[str] = (),
             put: tuple[str, str, int] | None = None) -> list[int]:
        keys = [*up, *down, *([put[0]] if put else []), *read]
        args = [len(up), len(down), max(1, int(up_ttl)), 1 if put else 0,
                *((put[1], max(1, int(put[2]))) if put else ())]
        ups, got = cast(list[list[Any]], self._move(keys=keys, args=args))
        return [int(v) for v in ups] + [int(v) if v else 0 for v in got]

    def put(self, key: str, value: str, ttl: int) -> None:
        self._redis.set(key, value, ex=max(1, int(ttl)))

    def put_new(self, key: str, value: str, ttl: int) -> bool:
        return bool(self._redis.set(key, value, ex=max(1, int(ttl)), nx=True))

    def remaining(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        return [max(0, ms) / 1000 for ms in pipe.execute()]

    def delete(self, keys: list[str]) -> int:
        return cast(int, self._redis.delete(*keys)) if keys else 0

    def scan(self, prefix: str) -> list[tuple[str, str, float]]:
        keys = list(self._redis.scan_iter(match=_glob_escape(prefix) + "*", count=500))
        if not keys:
            return []
        values = cast(list[str | None], self._redis.mget(keys))  # (redis-py types sync and async together)
        left = self.remaining(keys)
        return [(k, v, t) for k, v, t in zip(keys, values, left, strict=False) if v is not None]


class MemoryCounters:
    """The same operations in process memory (one worker's view only)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        self._lock = threading.RLock()
        self._clock = clock
        self._ops = 0

    def _live(self, key: str, now: float) -> tuple[str, float] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._data[key]
            return None
        return item

    def _sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % 1024 == 0:
            for key in [k for k, (_, exp) in self._data.items() if exp <= now]:
                del self._data[key]

    def incr(self, key: str, ttl: int) -> int:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            item = self._live(key, now)
            value = int(item[0]) + 1 if item else 1
            self._data[key] = (str(value), item[1] if item else now + ttl)
            return value

    def get_many(self, keys: list[str]) -> list[int]:
        with self._lock:
            now = self._clock()
            return [int(item[0]) if (item := self._live(k, now)) else 0 for k in keys]

    def peek(self, live: list[str], values: list[str], enter: Sequence[str] = (), ttl: int = 1
             ) -> tuple[list[float], list[int], list[int]]:
        with self._lock:  # re-entrant below: one instant
            entered = self._add_many(list(enter), 1, ttl)
            return self.remaining(live), self.get_many(values), entered

    def move(self, up: list[str], up_ttl: int, down: list[str], read: Sequence[str] = (),
             put: tuple[str, str, int] | None = None) -> list[int]:
        with self._lock:
            self._add_many(down, -1, 1)
            if put is not None:
                self.put(*put)
            return self._add_many(up, 1, up_ttl) + self.get_many(list(read))

    def _add_many(self, keys: list[str], amount: int, ttl: int) -> list[int]:
        with self._lock:
            now = self._clock()
            out = []
            for key in keys:
                item = self._live(key, now)
                value = (int(item[0]) if item else 0) + amount
                self._data[key] = (str(value), item[1] if item else now + max(1, int(ttl)))
                out.append(value)
            return out

    def put(self, key: str, value: str, ttl: int) -> None:
        with self._lock:
            self._data[key] = (value, self._clock() + max(1, int(ttl)))

    def put_new(self, key: str, value: str, ttl: int) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now):
                return False
            self._data[key] = (value, now + max(1, int(ttl)))
            return True

    def remaining(self, keys: list[str]) -> list[float]:
        with self._lock:
            now = self._clock()
            return [max(0.0, item[1] - now) if (item := self._live(k, now)) else 0.0 for k in keys]

    def delete(self, keys: list[str]) -> int:
        with self._lock:
            return sum(1 for k in keys if self._data.pop(k, None) is not None)

    def scan(self, prefix: str) -> list[tuple[str, str, float]]:
        with self._lock:
            now = self._clock()
            return [(k, v, exp - now) for k, (v, exp) in list(self._data.items()) if k.startswith(prefix) and exp > now]


class FallbackCounters:
    """Redis first; on a Redis error the memory store answers (never fail open)."""

    def __init__(self, primary: CounterStore, fallback: MemoryCounters, on_fallback: Callable[[], None]) -> None:
        self.primary = primary
        self.fallback = fallback
        self._on_fallback = on_fallback
        self._last_log = 0.0

    def _call(self, name: str, *args: object) -> object:
        try:
            return getattr(self.primary, name)(*args)
        except redis.RedisError as exc:
            self._on_fallback()
            now = time.monotonic()
            if now - self._last_log > 30:
                self._last_log = now
                _log.warning("throttle counters: Redis unavailable (%s); counting in this process only",
                             type(exc).__name__)
            return getattr(self.fallback, name)(*args)

    def incr(self, key: str, ttl: int) -> int:
        return self._call("incr", key, ttl)  # type: ignore[return-value]

    def get_many(self, keys: list[str]) -> list[int]:
        return self._call("get_many", keys)  # type: ignore[return-value]

    def peek(self, live: list[str], values: list[str], enter: Sequence[str] = (), ttl: int = 1
             ) -> tuple[list[float], list[int], list[int]]:
        return self._call("peek", live, values, enter, ttl)  # type: ignore[return-value]

    def move(self, up: list[str], up_ttl: int, down: list[str], read: Sequence[str] = (),
             put: tuple[str, str, int] | None = None) -> list[int]:
        return self._call("move", up, up_ttl, down, read, put)  # type: ignore[return-value]

    def put(self, key: str, value: str, ttl: int) -> None:
        self._call("put", key, value, ttl)

    def put_new(self, key: str, value: str, ttl: int) -> bool:
        return self._call("put_new", key, value, ttl)  # type: ignore[return-value]

    def remaining(self, keys: list[str]) -> list[float]:
        return self._call("remaining", keys)  # type: ignore[return-value]

    def delete(self, keys: list[str]) -> int:
        # both: a lift must also clear what was counted in memory during an outage
        n = self.fallback.delete(keys)
        return max(n, self._call("delete", keys))  # type: ignore[call-overload]

    def scan(self, prefix: str) -> list[tuple[str, str, float]]:
        return self._call("scan", prefix)  # type: ignore[return-value]


def build_counters(redis_url: str | None, on_fallback: Callable[[], None]) -> CounterStore:
    if not redis_url:
        return MemoryCounters()
    return FallbackCounters(RedisCounters(redis_url), MemoryCounters(), on_fallback)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
