"""Liveness and readiness. Metrics are not here: they have their own listener
(``AUTHSVC_METRICS_BIND``, :mod:`authsvc.metrics_server`), never the public port."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from .container import container

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    ready, reason = container().health.readiness()
    resp = jsonify(status="ready" if ready else "unavailable", detail=reason)
    resp.status_code = 200 if ready else 503
    return resp
