"""--dev only: the example payment front end at ``/example/`` and its two dev helpers.

- ``GET /example/dev/outbox``: the last SMS and emails the console providers printed (newest
  first), so the page can fill in the codes a real user reads on their phone;
- ``POST /example/dev/redeem``: stands in for the integrator's payment backend: it redeems a
  step-up token through the real ``POST /v1/step-up/redeem`` with client credentials of its
  own (a dev client made on first use) and returns what the backend would have seen.

Neither exists without ``--dev`` (``register`` is not called): they hand out codes.
"""

from __future__ import annotations

import base64
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from ..container import Container
from .container import container

bp = Blueprint("dev_example", __name__, url_prefix="/example")
FILES = Path(__file__).resolve().parent.parent / "example"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


def _container() -> Container:
    return container()


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


@bp.get("/")
def index() -> ResponseReturnValue:
    return send_from_directory(FILES, "index.html", max_age=0)


@bp.get("/<any('app.js', 'style.css'):name>")
def asset(name: str) -> ResponseReturnValue:
    return send_from_directory(FILES, name, max_age=0)


@bp.get("/dev/outbox")
def outbox() -> ResponseReturnValue:
    recorder = _container().extra.get("dev_outbox")
    return jsonify(recorder.recent() if recorder else [])


@bp.post("/dev/redeem")
def redeem() -> ResponseReturnValue:
    c = _container()
    creds = c.extra.get("dev_client")
    if creds is None:
        creds = c.clients.create("example payment backend (dev)", operator="dev", reason="authsvc serve --dev example")
        c.extra["dev_client"] = creds
    basic = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    # The real endpoint, as a payment backend calls it (HTTP Basic with its client credentials).
    answer = current_app.test_client().post(
        "/v1/step-up/redeem", data=request.get_data(), content_type="application/json",
        headers={"Authorization": f"Basic {basic}"}, environ_base={"REMOTE_ADDR": request.remote_addr},
    )
    return Response(answer.get_data(), status=answer.status_code, mimetype=answer.mimetype)
