"""The "this wasn't me" page: ``GET /report?token=...`` asks, ``POST /report`` (the form) acts.

GET only reads what the link is about, so mail scanners and link previews that follow links
change nothing. The form carries the token itself in a hidden field: the token is the
capability (no cookie or session is involved, so there is nothing for a cross-site request to
ride on). The page needs no JavaScript, refuses every script, and cannot be framed. The token
never reaches a log: the access log (``authsvc.logs``) records paths without query strings,
``install`` also cuts them from the Werkzeug dev server's own lines, and the page is never
cached and sends no Referer.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Flask, Response, g, render_template, request
from flask.typing import ResponseReturnValue

from .. import errors, i18n
from ..container import Container
from ..services.platform import messages
from . import problems
from .container import container

bp = Blueprint("report_page", __name__)

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
MAX_TOKEN = 512


class QueryStringFilter(logging.Filter):
    """Cuts the query string out of access-log lines (Werkzeug's), where tokens would show."""

    _QUERY = re.compile(r"\?[^\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._QUERY.sub("?…", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self._QUERY.sub("?…", record.msg)
        return True


def _gettext(msgid: str) -> str:  # Jinja fills in the %(placeholders)s
    return i18n.translations(g.get("locale", i18n.SOURCE_LOCALE)).gettext(msgid)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.translations(g.get("locale", i18n.SOURCE_LOCALE)).ngettext(singular, plural, n)


def install(app: Flask) -> None:
    """Templates translate through the catalogue in the page's locale (``g.locale``)."""
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, QueryStringFilter) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(QueryStringFilter())


def _svc() -> Container:
    return container()


def _page(state: str, locale: str, status: int = 200, **context: object) -> Response:
    g.locale = locale
    titles = {"ask": "Was this you?", "done": "Your account is frozen", "invalid": "This link is no longer valid"}
    html = render_template("report.html", state=state, locale=locale,
                           title=messages.text(locale, titles[state]), **context)
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Language"] = locale
    return resp


def _visitor_locale() -> str:
    return request.accept_languages.best_match(i18n.LOCALES) or _svc().settings.default_locale


def _token(raw: str | None) -> str | None:
    return raw if raw and len(raw) <= MAX_TOKEN and raw.isascii() and raw.isprintable() else None


@bp.get("/report")
def show() -> ResponseReturnValue:
    token = _token(request.args.get("token"))
    subject = _svc().reports.describe(token) if token else None
    if subject is None:
        return _page("invalid", _visitor_locale(), 404)
    locale = subject.locale
    device = (messages.device_label(locale, subject.browser, subject.os)
              if subject.reason in ("new_device", "factor_guessing") else None)
    return _page("ask", locale, subject=subject, device=device, token=token,
                 when=i18n.format_time(subject.at, locale))


@bp.post("/report")
def confirm() -> ResponseReturnValue:
    if request.mimetype != "application/x-www-form-urlencoded":
        return problems.problem(415, "unsupported_media_type", "Unsupported media type",
                                "the report form is application/x-www-form-urlencoded")
    token = _token(request.form.get("token"))
    if token is None:  # a malformed form: nothing to look up
        return _page("invalid", _visitor_locale(), 400)
    try:
        locale = _svc().reports.report(token)
    except errors.InvalidToken:
        return _page("invalid", _visitor_locale(), 404)
    return _page("done", locale)
