"""Logging: one JSON object per line on stdout, for the app, the access log and gunicorn.

Rules:
- every record is one line of JSON (``ts``, ``level``, ``logger``, ``msg`` and any fields
  passed with ``extra={"fields": {...}}``); inside a request it also carries ``request_id``;
- the access log (logger ``authsvc.access``, written by :func:`install_request_log`) has the
  request id (taken from a well-formed ``X-Request-Id`` or made, and echoed back in the
  response), method, route, path WITHOUT the query string, status, latency and client address;
  successful probes and scrapes (/healthz, /readyz, /metrics) are logged at DEBUG only;
- nothing secret reaches a log line: query strings are never logged, and as a second line of
  defence every message is scrubbed of ``name=value`` pairs whose name suggests a secret
  (token, code, secret, password, key, signature, authorization) and of URL credentials;
- third-party loggers (twilio prints ten INFO lines per SMS, urllib3, werkzeug, pgserver,
  gunicorn's own start-up chatter) are held at WARNING whatever ``--log-level`` says: their
  DEBUG/INFO output can carry request bodies, which carry one-time codes.
"""

from __future__ import annotations

import json
import logging
import logging.config
import math
import re
import secrets
import sys
import time
import warnings
from datetime import UTC, datetime
from typing import Any, TextIO

ACCESS_LOGGER = "authsvc.access"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

QUIET_LOGGERS = (
    "twilio",
    "twilio.http_client",
    "urllib3",
    "requests",
    "werkzeug",
    "pgserver",
    "gunicorn.error",
    "gunicorn.access",
    "flask_limiter",
    "limits",
    "asyncio",
    "mail.log",
)

_SECRET_PAIR = re.compile(
    r"(?i)\b([\w.-]*(?:token|code|secret|password|passwd|pwd|key|signature|authorization|otp)[\w.-]*)"
    r"(['\"]?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+)(:[^/\s@]*)?@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


# Every pattern above needs one of these (case-folded) in the text: most lines (every access
# log line) have none and skip the three substitutions.
_TRIGGERS = ("token", "code", "secret", "passw", "pwd", "key", "signature", "authorization", "otp",
             "://", "bearer", "basic")


_TRIGGER = re.compile("|".join(re.escape(t) for t in _TRIGGERS))


def redact(text: str) -> str:
    """``text`` with secret-looking ``name=value`` values, URL passwords and bearer tokens masked."""
    # as re's IGNORECASE matches: 'ſ' is an 's', 'K' (Kelvin) a 'k'; one search for all the
    # triggers (a generator over them cost 6x as much on every field of every access line)
    if _TRIGGER.search(text.casefold()) is None:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}{':***' if m.group(3) else ''}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each record (test runners and
    click's CliRunner swap it), never to a stream closed meanwhile."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:  # mirrors logging.StreamHandler.stream
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)  # one, not one per line (json.dumps with options)
_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    """``created`` as ISO 8601 in UTC with milliseconds (``2026-12-07T23:53:18.320+00:00``),
    the seconds formatted once per second."""
    frac, whole = math.modf(created)
    us = round(frac * 1e6)  # as datetime.fromtimestamp rounds
    second = int(whole)
    if us >= 1_000_000:
        second, us = second + 1, us - 1_000_000
    ms = us // 1000
    cached = _second
    if cached[0] != second:
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
        cached[:] = [second, text]
    return f"{cached[1]}.{ms:03d}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or _current_request_id()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exc"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)


def _current_request_id() -> str | None:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - flask is a dependency
        return None
    if has_request_context():
        return g.get("request_id")
    return None


def logging_dict(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary (also handed to gunicorn as ``logconfig_dict``)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "authsvc.logs.JsonFormatter"}},
        "handlers": {
            "stdout": {"class": "authsvc.logs.StdoutHandler", "formatter": "json"}
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            **{name: {"level": "WARNING", "propagate": True, "handlers": []} for name in QUIET_LOGGERS},
            # the access log is INFO by nature: keep it even with --log-level WARNING (and show
            # the probes' DEBUG lines with --log-level DEBUG)
            ACCESS_LOGGER: {"level": "DEBUG" if level == "DEBUG" else "INFO", "propagate": True, "handlers": []},
        },
    }


def configure(level: str = "INFO") -> None:
    """Log JSON lines to stdout at ``level``; third-party loggers stay at WARNING."""
    if level.upper() not in logging.getLevelNamesMapping():
        raise ValueError(f"unknown log level {level!r}")
    logging.config.dictConfig(logging_dict(level))
    logging.captureWarnings(True)
    # The JSON lines carry no caller file/line, thread or process fields: skip collecting them
    # for every record (the logging HOWTO's "Optimization"; measured: an access line 20.6 ->
    # 17.4 us of CPU).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # pgserver and platformdirs complain on every call when XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="pgserver")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is well formed (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if header and _REQUEST_ID_RE.fullmatch(header):
        return header
    return secrets.token_hex(16)


def install_request_log(app: Any, client_ip: Any) -> None:
    """Request ids and the JSON access log for a Flask ``app``; ``client_ip()`` names the caller."""
    from flask import g, request

    access = logging.getLogger(ACCESS_LOGGER)

    @app.before_request
    def _begin() -> None:
        gg = g._get_current_object()  # the proxies cost per access
        gg.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        gg.request_started = time.perf_counter()

    @app.after_request
    def _end(response):  # type: ignore[no-untyped-def]
        req, gg = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        request_id = gg.get("request_id") or request_id_from(req.headers.get(REQUEST_ID_HEADER))
        response.headers[REQUEST_ID_HEADER] = request_id
        # Probes and scrapes that succeed (every few seconds, from the orchestrator) are DEBUG.
        status = response.status_code
        path = req.path
        quiet = path in QUIET_PATHS and status < 400
        level = logging.DEBUG if quiet else logging.INFO
        if not access.isEnabledFor(level):
            return response
        started = gg.get("request_started")
        try:
            client = client_ip()
        except Exception:  # noqa: BLE001 - logging must never fail a request
            client = req.remote_addr
        method, rule = req.method, req.url_rule
        access.log(
            level,
            "%s %s %s", method, path, status,
            extra={"request_id": request_id, "fields": {
                "method": method,
                "route": rule.rule if rule else None,
                "path": path,  # never the query string: /report?token=... stays out
                "status": status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "client": client,
                "user_agent": (req.headers.get("User-Agent") or "")[:256] or None,
            }},
        )
        return response
