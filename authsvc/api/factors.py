"""Second factors: enrollment (enrollment token, or bearer + step-up) and management."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from ..services.flows.factor_management import FactorService
from . import auth, body
from .container import container
from .schemas import EmptyIn, TotpBeginIn, TotpConfirmIn, WebauthnAddIn, WebauthnOptionsIn

bp = Blueprint("factors", __name__)


def _svc() -> FactorService:
    return container().factors


def _created(payload: dict[str, Any]) -> Response:
    resp = jsonify(payload)
    resp.status_code = 201
    return resp


@bp.get("/v1/factors")
def list_factors() -> ResponseReturnValue:
    principal = auth.require_bearer()
    return jsonify(_svc().list(principal.account_id))


@bp.post("/v1/factors/totp")
def begin_totp() -> ResponseReturnValue:
    actor = auth.require_actor()
    req = body.parse(TotpBeginIn)
    return _created(_svc().begin_totp(actor, req.name))


@bp.post("/v1/factors/totp/<factor_id>/confirm")
def confirm_totp(factor_id: str) -> ResponseReturnValue:
    actor = auth.require_actor()
    req = body.parse(TotpConfirmIn)
    return jsonify(_svc().confirm_totp(actor, factor_id, req.code))


@bp.post("/v1/factors/webauthn/options")
def webauthn_options() -> ResponseReturnValue:
    actor = auth.require_actor()
    req = body.parse(WebauthnOptionsIn)
    return jsonify(options=_svc().webauthn_options(actor, passkey=req.passkey, payment=req.payment))


@bp.post("/v1/factors/webauthn")
def add_webauthn() -> ResponseReturnValue:
    actor = auth.require_actor()
    req = body.parse(WebauthnAddIn)
    return _created(_svc().add_webauthn(actor, req.credential, req.name))


@bp.post("/v1/factors/recovery-codes")
def recovery_codes() -> ResponseReturnValue:
    actor = auth.require_actor()
    body.parse(EmptyIn)
    return jsonify(recovery_codes=_svc().regenerate_recovery_codes(actor))


@bp.delete("/v1/factors/<factor_id>")
def remove(factor_id: str) -> ResponseReturnValue:
    actor = auth.require_actor()
    _svc().remove(actor, factor_id)
    return "", 204
