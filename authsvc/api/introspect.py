"""RFC 7662 token introspection for payment backends (client credentials)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from . import auth, body
from .container import container
from .schemas import IntrospectIn

bp = Blueprint("introspect", __name__)


@bp.post("/v1/introspect")
def introspect() -> ResponseReturnValue:
    auth.require_client()
    req = body.parse(IntrospectIn, form=True)  # RFC 7662 clients send a form; JSON works too
    return jsonify(container().sessions.introspect(req.token))
