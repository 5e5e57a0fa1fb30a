"""``GET /.well-known/jwks.json``: the public signing keys (current, announced and previous);
``GET /.well-known/oauth-authorization-server``: RFC 8414 metadata that points at them."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..services.platform.metadata import authorization_server_metadata
from .container import container

bp = Blueprint("jwks", __name__)


@bp.get("/.well-known/jwks.json")
def jwks() -> ResponseReturnValue:
    resp = jsonify(container().keys.jwks())
    # Rotations publish new keys ahead of use, so caches may keep this for 5 minutes.
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server() -> ResponseReturnValue:
    resp = jsonify(authorization_server_metadata(container().settings))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
