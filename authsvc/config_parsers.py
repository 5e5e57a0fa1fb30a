"""Parsers of single ``AUTHSVC_*`` values (no environment here: ``config_values`` calls them)."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import ConfigError

_WEAK_WORDS = ("changeme", "secret", "password", "example", "default", "test")



@dataclass(frozen=True)
class LowValueCap:
    """``AUTHSVC_LOW_VALUE_EXEMPTION`` for one currency: a payment up to ``max_amount`` is exempt
    while the exempt payments since the last full step-up, this one included, stay within
    ``max_cumulative`` and ``max_count``."""

    currency: str
    max_amount: Decimal
    max_cumulative: Decimal
    max_count: int


def parse_low_value_caps(raw: str) -> tuple[LowValueCap, ...]:
    """``CUR:max_amount:max_cumulative:max_count,...`` (e.g. ``JPY:3000:10000:5,EUR:30:100:5``)."""
    caps: list[LowValueCap] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 4 or not re.fullmatch(r"[A-Z]{3}", parts[0]):
            raise ConfigError(f"{item!r} is not CUR:max_amount:max_cumulative:max_count")
        try:
            amount, cumulative = Decimal(parts[1]), Decimal(parts[2])
            count = int(parts[3])
        except (InvalidOperation, ValueError):
            raise ConfigError(f"{item!r}: amounts must be decimals and the count an integer") from None
        if not (amount.is_finite() and cumulative.is_finite()) or amount <= 0 or count < 1:
            raise ConfigError(f"{item!r}: amounts must be positive and the count at least 1")
        if cumulative < amount:
            raise ConfigError(f"{item!r}: the cumulative cap must be at least the per-payment cap")
        if any(c.currency == parts[0] for c in caps):
            raise ConfigError(f"{parts[0]} appears twice")
        caps.append(LowValueCap(parts[0], amount, cumulative, count))
    return tuple(caps)


def parse_encryption_keys(raw: str) -> tuple[tuple[str, bytes], ...]:
    """``base64`` or ``kid:base64[,kid:base64...]``; the first key encrypts."""
    keys: list[tuple[str, bytes]] = []
    for i, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        kid, _, b64 = part.rpartition(":")
        kid = kid or ("k1" if i == 0 else f"k{i + 1}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", kid):
            raise ConfigError(f"key id {kid!r} must be 1-32 letters, digits, '-' or '_'")
        try:
            key = base64.b64decode(b64 + "=" * (-len(b64) % 4),
                                   altchars=b"-_" if ("-" in b64 or "_" in b64) else None, validate=True)
        except (ValueError, TypeError):
            raise ConfigError(f"key {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise ConfigError(f"key {kid!r} must decode to 32 bytes, got {len(key)}")
        if len(set(key)) < 16:
            raise ConfigError(f"key {kid!r} is weak (not random)")
        if any(k == kid for k, _ in keys):
            raise ConfigError(f"key id {kid!r} appears twice")
        keys.append((kid, key))
    if not keys:
        raise ConfigError("no key given")
    return tuple(keys)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, str | None, str | None]:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service`` ->
    (sentinels, service name, username, password); ``ValueError`` when malformed. The same
    form flask-limiter (``limits``) reads for the rate limits (database 0)."""
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ValueError("not a redis+sentinel:// URL")
    auth, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if auth:
        user, _, pw = auth.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) or None)
    sentinels = []
    for item in hosts.split(","):
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port = item.partition(":")
        port = port or "26379"
        if not host or not port.isdigit():
            raise ValueError(f"bad sentinel address {item!r}")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if len(path) != 1:
        raise ValueError("the URL must end with /<service name>")
    return sentinels, path[0], username, password


def flag(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def parse_bind(bind: str, problems: list[str]) -> tuple[str, int | None]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); a problem is noted when malformed."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]") if host.startswith("[") else host
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        problems.append(f"bind address {bind!r} must be HOST:PORT (e.g. 127.0.0.1:8000)")
        return host, None
    return host, int(port)


def weak_secret(value: str, *, min_len: int) -> bool:
    lowered = value.lower()
    return len(value) < min_len or len(set(value)) < 10 or any(word in lowered for word in _WEAK_WORDS)


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """The CPUs this process may use: the cores it may run on (its affinity), capped by the
    container's CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cfs_period_us``)
    when there is one. ``os.cpu_count()`` counts the host's cores, which a sidecar limited to
    half a core on a 32-core node must not size anything by."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    quota: float | None = None
    try:
        limit, period = (cgroup_root / "cpu.max").read_text().split()[:2]
        if limit != "max" and int(period) > 0:
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:
            limit_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
            if limit_us > 0 and period_us > 0:
                quota = limit_us / period_us
        except (OSError, ValueError):
            pass
    return max(0.01, min(cpus, quota) if quota else cpus)
