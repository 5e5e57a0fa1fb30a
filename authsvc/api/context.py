"""Who is calling: client IP (honouring only trusted proxies), device id, user agent."""

from __future__ import annotations

import ipaddress
from flask import current_app, request

from ..services.sessions import RequestInfo

MAX_HEADER = 256


def client_ip() -> str:
    peer = request.remote_addr or "0.0.0.0"
    trusted = current_app.extensions["authsvc"].settings.trusted_proxies
    return resolve_client_ip(peer, request.headers.getlist("X-Forwarded-For"), trusted)


def resolve_client_ip(peer: str, forwarded: list[str], trusted: tuple) -> str:
    """The TCP peer, unless it is a trusted proxy: then X-Forwarded-For right to left,
    skipping trusted hops; the first untrusted (or malformed) hop is the client."""

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not is_trusted(hop):
            break
    return client


def request_context() -> RequestInfo:
    device = request.headers.get("X-Device-Id")
    if device is not None:
        device = device.strip()[:MAX_HEADER] or None
    return RequestInfo(
        ip=client_ip(),
        user_agent=(request.headers.get("User-Agent") or "")[:MAX_HEADER],
        device_id=device,
    )
