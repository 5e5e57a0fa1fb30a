"""``GET /openapi.yaml``: the machine-readable contract, as shipped with this build."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from flask import Blueprint, Response

from .. import errors

bp = Blueprint("spec", __name__)


@lru_cache(maxsize=1)
def _spec() -> bytes | None:
    try:
        return resources.files("authsvc").joinpath("openapi.yaml").read_bytes()
    except (FileNotFoundError, OSError):
        return None


@bp.get("/openapi.yaml")
def openapi_yaml() -> Response:
    body = _spec()
    if body is None:
        raise errors.NotFound("this build carries no openapi.yaml")
    resp = Response(body, content_type="application/yaml; charset=utf-8")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
