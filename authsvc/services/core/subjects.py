"""What a password attempt is charged to (:mod:`.throttle`): subjects (a client, its network,
an email, a known device), budgets, an attempt between admission and its outcome, and a wait
that began."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from ...security import contexts
from ..platform.hashing import Standing

SCOPES = ("client", "network", "email", "device")


@dataclass(frozen=True)
class Budget:
    scope: str
    limit: int  # failures within the window before the first wait
    window: int  # seconds
    base_delay: int  # the first wait; doubled by each further failure, up to max_delay
    max_delay: int


@dataclass(frozen=True)
class Subject:
    """One thing a request is charged to: ``scope`` and an id (an address, a network, an email
    digest, a device token id) plus a label an operator may read (never a raw email)."""

    scope: str
    ident: str
    label: str


@dataclass
class Attempt:
    """One password attempt between ``Throttle.admit`` and its outcome."""

    subjects: list[Subject]
    standing: Standing
    inflight: list[str]  # the in-flight counters it holds until its outcome
    ticket: str | None  # where a 503 leaves the right to come back ahead of other strangers
    attack: bool = False  # whether an attack was on when it was admitted


@dataclass(frozen=True)
class Blocked:
    subject: Subject
    seconds: int
    new_episode: bool


def client_subjects(ip: str) -> list[Subject]:
    """The client (IPv4 address, IPv6 /64) and its network (IPv4 /24, IPv6 /48)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        # an unparseable address gets a bucket of its own, never one shared by all such clients
        return [Subject("client", f"raw:{ip[:64]}", f"unparsed {ip[:64]!r}")]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        client, network = f"{addr}", ipaddress.ip_network(f"{addr}/24", strict=False)
    else:
        client = str(ipaddress.ip_network(f"{addr}/64", strict=False))
        network = ipaddress.ip_network(f"{addr}/48", strict=False)
    return [Subject("client", client, client), Subject("network", str(network), str(network))]


def email_subject(email_normalized: str | None, typed: str) -> Subject:
    """The email as typed, normalised when it parses; the id is a digest, the label masked."""
    basis = email_normalized if email_normalized is not None else typed.strip().lower()
    digest = hashlib.sha256(contexts.THROTTLE_EMAIL_LABEL + basis.encode("utf-8", "replace")).hexdigest()[:32]
    return Subject("email", digest, mask_email(basis))


def device_subject(token_id: str) -> Subject:
    return Subject("device", token_id, f"device token {token_id}")


def mask_email(email: str) -> str:
    local, at, domain = email.partition("@")
    return (local[:2] + "***" + at + domain)[:80] if at else "***"
