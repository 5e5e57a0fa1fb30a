"""``GET /.well-known/jwks.json``: the public signing keys (current, announced and previous)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("jwks", __name__)


@bp.get("/.well-known/jwks.json")
def jwks():
    resp = jsonify(current_app.extensions["authsvc"].keys.jwks())
    # Rotations publish new keys ahead of use, so caches may keep this for 5 minutes.
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
