"""Step-up for payments and other sensitive actions; redemption by payment backends."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from ..services.flows.step_up import ExemptStepUp, StepUpService
from . import auth, body
from .container import container
from .schemas import RedeemIn, StepUpIn, StepUpVerifyIn

bp = Blueprint("step_up", __name__)


def _svc() -> StepUpService:
    return container().step_up


def _tx(model: BaseModel | None) -> dict[str, Any] | None:
    return model.model_dump() if model is not None else None


@bp.post("/v1/step-up")
def create() -> ResponseReturnValue:
    principal = auth.require_bearer()
    req = body.parse(StepUpIn)
    ch = _svc().create(principal, req.action, _tx(req.transaction), recurring=req.recurring,
                       allow_exemption=req.allow_exemption)
    if isinstance(ch, ExemptStepUp):
        resp = jsonify({"exempt": ch.exempt, "step_up_token": ch.step_up_token, "expires_in": ch.expires_in,
                        "acr": ch.acr, "amr": ch.amr, "transaction_hash": ch.transaction_hash})
        resp.status_code = 201
        return resp
    out = {"challenge_id": ch.challenge_id, "expires_in": ch.expires_in, "methods": ch.methods}
    if ch.webauthn_options is not None:
        out["webauthn_options"] = ch.webauthn_options
    if ch.spc is not None:
        out["spc"] = ch.spc
    resp = jsonify(out)
    resp.status_code = 201
    return resp


@bp.post("/v1/step-up/<challenge_id>/verify")
def verify(challenge_id: str) -> ResponseReturnValue:
    principal = auth.require_bearer()
    req = body.parse(StepUpVerifyIn)
    return jsonify(_svc().verify(principal, challenge_id, method=req.method, code=req.code, credential=req.credential))


@bp.post("/v1/step-up/redeem")
def redeem() -> ResponseReturnValue:
    client_id = auth.require_client()
    req = body.parse(RedeemIn)
    return jsonify(_svc().redeem(client_id, token=req.step_up_token, action=req.action,
                                 transaction=_tx(req.transaction)))
