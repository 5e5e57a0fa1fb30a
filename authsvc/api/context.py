"""Who is calling: client IP (honouring only trusted proxies), device id and device token, user agent.

The client address is the TCP peer unless the peer is in ``AUTHSVC_TRUSTED_PROXIES``; then
the proxy header named by ``AUTHSVC_PROXY_HEADER`` (``X-Forwarded-For`` by default, or RFC 7239
``Forwarded``; only that one, so a header the proxy passes through untouched cannot be used to
spoof) is read right to left, skipping trusted hops. A hop may be ``ip``, ``ip:port``, ``[v6]``
or ``[v6]:port`` (``Forwarded``: ``for=`` with the same forms, quoted or not).

Rule: the header is split on every ``,`` (and ``Forwarded`` elements on every ``;``) without
honouring double quotes. A proxy that appends to the client's own header (nginx's
``$proxy_add_x_forwarded_for``, AWS ALB, Envoy) writes its hop last; a client that opens a
quote (``X-Forwarded-For: "x``, ``Forwarded: for="x``) must not be able to swallow that hop.
No address a proxy writes contains a comma or a semicolon, so nothing valid is lost.

A first untrusted hop that is still not an address (``for=unknown``, an obfuscated identifier,
garbage) is logged and counted (``authsvc_client_address_problems_total``), and the client gets
the address of the nearest trusted hop (the proxy that wrote it): a fixed bucket, never one
derived from the hop's text, so a client that controls that text cannot mint a fresh
rate-limit bucket per request. A trusted proxy that sends no header at all is counted too
(``reason="missing"``); its clients then share the proxy's address, as nothing tells them apart.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from dataclasses import dataclass

from flask import g, request

from ..services.core.sessions import RequestInfo
from .container import container

MAX_HEADER = 256
_log = logging.getLogger(__name__)
_LOG_EVERY = 60.0
_last_logged: dict[str, float] = {}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientAddress:
    ip: str
    problem: str | None = None  # "unparseable" or "missing" (from a trusted proxy)
    raw_hop: str | None = None


def client_ip() -> str:
    """The caller's address (resolved once per request: the rate limits, the services and the
    access log all ask)."""
    cached = g.get("_client_ip")
    if cached is not None:
        return cached
    g._client_ip = ip = _resolve_client_ip()
    return ip


def client_key() -> str:
    """The per-client rate-limit key: the IPv4 address, or the IPv6 /64 (one subscriber's
    prefix: rotating addresses inside it is free, so it is one client), as the failure budgets
    and SMS caps count."""
    cached = g.get("_client_key")
    if cached is not None:
        return cached
    g._client_key = key = rate_limit_key(client_ip())
    return key


@functools.lru_cache(maxsize=4096)
def rate_limit_key(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))
    return str(addr)


def _resolve_client_ip() -> str:
    services = container()
    settings = services.settings
    peer = request.remote_addr or "0.0.0.0"
    header = settings.proxy_header
    name = "Forwarded" if header == "forwarded" else "X-Forwarded-For"
    address = _resolve_cached(peer, tuple(request.headers.getlist(name)), settings.trusted_proxies,
                              header == "forwarded")
    if address.problem is not None:
        _report(services, peer, address)
    return address.ip


@functools.lru_cache(maxsize=1024)
def _resolve_cached(peer: str, headers: tuple[str, ...], trusted: tuple[Network, ...],
                    forwarded: bool) -> ClientAddress:
    """:func:`resolve_client_address` remembered for the last 1,024 distinct (peer, header)
    pairs: parsing the proxy header with ``ipaddress`` on every request was ~5% of an
    introspection's worker CPU, and a backend calls from the same few addresses."""
    return resolve_client_address(peer, list(headers), trusted, forwarded=forwarded)


def _report(container: object, peer: str, address: ClientAddress) -> None:
    metrics = getattr(container, "metrics", None)
    if metrics is not None:
        metrics.client_address_problems.labels(address.problem).inc()
    key = f"{peer}:{address.problem}"
    now = time.monotonic()
    if now - _last_logged.get(key, float("-inf")) >= _LOG_EVERY:  # at most once a minute per proxy
        _last_logged[key] = now
        _log.warning(
            "trusted proxy %s sent %s client address %r; using %s (logged at most once a minute)",
            peer, "no" if address.problem == "missing" else "an unparseable",
            (address.raw_hop or "")[:64], address.ip,
        )


def resolve_client_ip(peer: str, forwarded: list[str], trusted: tuple, *, rfc7239: bool = False) -> str:
    return resolve_client_address(peer, forwarded, trusted, forwarded=rfc7239).ip


def resolve_client_address(
    peer: str, headers: list[str], trusted: tuple[Network, ...], *, forwarded: bool = False
) -> ClientAddress:
    """The TCP peer, unless it is a trusted proxy: then the proxy header's hops right to left,
    skipping trusted hops; the first untrusted hop is the client."""
    peer_ip = parse_hop(peer)
    if not trusted or peer_ip is None or not _is_trusted(peer_ip, trusted):
        return ClientAddress(peer)
    hops = _forwarded_for(headers) if forwarded else [h for line in headers for h in line.split(",")]
    hops = [None if h is None else h.strip() for h in hops if h is None or h.strip()]
    if not hops:
        return ClientAddress(str(peer_ip), "missing")
    client = str(peer_ip)
    for hop in reversed(hops):
        ip = parse_hop(hop) if hop is not None else None
        if ip is None:
            # the nearest trusted hop (the proxy that wrote this one): one fixed bucket
            return ClientAddress(client, "unparseable", hop or "")
        client = str(ip)
        if not _is_trusted(ip, trusted):
            break
    return ClientAddress(client)


def parse_hop(text: str) -> IPAddress | None:
    """``ip``, ``ip:port``, ``[v6]``, ``[v6]:port`` (optionally in double quotes) -> address."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        try:
            ip: IPAddress = ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            host, sep, port = text.rpartition(":")
            if not sep or not _is_port(port):
                return None
            try:
                ip = ipaddress.IPv4Address(host)
            except ValueError:
                return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%")[0])
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return ip


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 5 and int(text) <= 65535


def _is_trusted(ip: IPAddress, trusted: tuple[Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def _forwarded_for(headers: list[str]) -> list[str | None]:
    """RFC 7239: the ``for=`` value of each element (None for an element without one); split
    on every ``,`` and ``;``, quotes or not (see the module's rule)."""
    hops: list[str | None] = []
    for line in headers:
        for element in line.split(","):
            if not element.strip():
                continue
            value = None
            for pair in element.split(";"):
                name, sep, raw = pair.partition("=")
                if sep and name.strip().lower() == "for":
                    value = raw.strip()
                    break
            hops.append(value)
    return hops


def request_context() -> RequestInfo:
    device = request.headers.get("X-Device-Id")
    if device is not None:
        device = device.strip()[:MAX_HEADER] or None
    token = request.headers.get("X-Device-Token")
    if token is not None:
        # a real token is 43 characters; a longer value is passed on cut, so it matches nothing
        token = token.strip()[:MAX_HEADER] or None
    return RequestInfo(
        ip=client_ip(),
        user_agent=(request.headers.get("User-Agent") or "")[:MAX_HEADER],
        device_id=device,
        device_token=token,
    )
