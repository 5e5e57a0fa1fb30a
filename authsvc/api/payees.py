"""The account's trusted payees (a payment exemption): list, add under step-up, remove."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from .. import errors
from ..services.flows.exemptions import TrustedPayees
from . import auth, body
from .container import container
from .schemas import TrustedPayeeIn

bp = Blueprint("payees", __name__)


def _svc() -> TrustedPayees:
    return container().trusted_payees


@bp.get("/v1/payees/trusted")
def list_trusted() -> ResponseReturnValue:
    principal = auth.require_bearer()
    return jsonify(payees=_svc().list(principal))


@bp.post("/v1/payees/trusted")
def add_trusted() -> ResponseReturnValue:
    principal = auth.require_bearer()
    req = body.parse(TrustedPayeeIn)
    step_up = request.headers.get("X-Step-Up-Token")
    resp = jsonify(_svc().add(principal, req.payee, step_up.strip()[:512] if step_up else None))
    resp.status_code = 201
    return resp


@bp.delete("/v1/payees/trusted")
def remove_trusted() -> ResponseReturnValue:
    principal = auth.require_bearer()
    payees = request.args.getlist("payee")
    if len(payees) != 1:
        raise errors.InvalidRequest("name one payee", errors=[{"field": "payee", "message": "required, once"}])
    _svc().remove(principal, payees[0])
    return "", 204
