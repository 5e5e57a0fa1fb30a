"""Liveness, readiness, metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    ready, reason = current_app.extensions["authsvc"].health.readiness()
    resp = jsonify(status="ready" if ready else "unavailable", detail=reason)
    resp.status_code = 200 if ready else 503
    return resp


@bp.get("/metrics")
def metrics():
    body, content_type = current_app.extensions["authsvc"].metrics.render()
    return Response(body, content_type=content_type)
