"""Who is calling: bearer access tokens, enrollment tokens, client credentials."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from flask import request

from .. import errors
from ..container import Container
from ..services.core.sessions import Principal, RequestInfo
from ..services.flows.factor_management import Actor
from .container import container
from .context import client_ip, request_context


def _container() -> Container:
    return container()


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("send a bearer token in the Authorization header")
    return token.strip()


def require_bearer() -> Principal:
    token = _bearer()
    if token.count(".") != 2:
        raise errors.InvalidToken("not an access token")
    return _container().sessions.authenticate(token, ip=client_ip())


def require_actor() -> Actor:
    """An enrollment token (first factor only), or a bearer token; the service decides whether
    the change also needs the step-up token sent in ``X-Step-Up-Token``."""
    token = _bearer()
    if token.count(".") != 2:
        return _container().factors.enrollment_actor(token)
    principal = _container().sessions.authenticate(token, ip=client_ip())
    step_up = request.headers.get("X-Step-Up-Token")
    return Actor(
        account_id=principal.account_id,
        session_id=principal.session_id,
        step_up_token=step_up.strip()[:512] if step_up else None,
    )


def require_client() -> str:
    """HTTP Basic client authentication as RFC 6749 section 2.3.1 has it: the client
    form-urlencodes its id and its secret, then Base64-encodes ``id:secret``. Both parts are
    form-urldecoded here after Base64 (an id or secret sent raw decodes to itself: ours hold
    no ``%`` or ``+``); the secret is then compared in constant time by the service."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise errors.InvalidClient("client credentials (HTTP Basic) required")
    try:
        raw_id, sep, raw_secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.InvalidClient("malformed client credentials") from None
    if not sep or not client_id or not secret:
        raise errors.InvalidClient("malformed client credentials")
    return _container().clients.authenticate(client_id, secret)


def info() -> RequestInfo:
    return request_context()
