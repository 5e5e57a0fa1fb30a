"""Errors to RFC 9457 problem documents, in one place."""

from __future__ import annotations

import logging

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .. import errors

_log = logging.getLogger("authsvc.api")
PROBLEM = "application/problem+json"

# HTTP errors raised by Flask/werkzeug themselves, mapped to our stable codes.
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def problem(status: int, code: str, title: str, detail: str, *, errors_: list | None = None,
            headers: dict | None = None, extra: dict | None = None) -> Response:
    body = {
        "type": f"https://authsvc.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors_:
        body["errors"] = errors_
    if extra:
        body.update(extra)
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    resp.headers["Cache-Control"] = "no-store"
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(errors.AuthsvcError)
    def _ours(exc: errors.AuthsvcError) -> Response:
        if exc.status >= 500 and not isinstance(exc, errors.Busy):  # shedding is counted, not logged
            _log.error("%s: %s", type(exc).__name__, exc.detail, exc_info=exc.__cause__ is not None)
        return problem(exc.status, exc.code, exc.title, exc.detail, errors_=exc.errors,
                       headers=exc.headers, extra=exc.extra)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(_retry_after(app))
        if status == 405 and isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return problem(status, _HTTP_CODES.get(status, "http_error"), exc.name,
                       exc.description or exc.name, headers=headers)

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        _log.exception("unhandled error")
        return problem(500, "internal_error", "Internal error", "The server failed to handle the request.")


def _retry_after(app: Flask) -> int:
    import time

    limiter = app.extensions["authsvc"].limiter
    current = limiter.current_limit if limiter else None
    if current is None:
        return 60
    return max(1, int(current.reset_at - time.time()))
