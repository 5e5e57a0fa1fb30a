"""Password reset (SMS to the registered phone + a second factor) and contact changes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from ..container import Container
from . import auth, body
from .container import container
from .context import client_ip
from .schemas import CodeIn, EmailChangeIn, PasswordResetIn, PhoneChangeIn, ResetCompleteIn, ResetFactorIn, ResetSmsIn

bp = Blueprint("recovery", __name__)


def _svc() -> Container:
    return container()


def _accepted(payload: dict[str, Any]) -> Response:
    resp = jsonify(payload)
    resp.status_code = 202
    return resp


@bp.post("/v1/password-resets")
def start_reset() -> ResponseReturnValue:
    req = body.parse(PasswordResetIn)
    info = auth.info()
    reset_id, ttl = _svc().password_reset.start(req.email, ip=client_ip(), device_token=info.device_token)
    return _accepted({"reset_id": reset_id, "expires_in": ttl})


@bp.post("/v1/password-resets/<reset_id>/sms")
def reset_sms(reset_id: str) -> ResponseReturnValue:
    req = body.parse(ResetSmsIn)
    return jsonify(_svc().password_reset.verify_sms(reset_id, req.code))


@bp.post("/v1/password-resets/<reset_id>/factor")
def reset_factor(reset_id: str) -> ResponseReturnValue:
    req = body.parse(ResetFactorIn)
    token, ttl = _svc().password_reset.verify_factor(
        reset_id, method=req.method, code=req.code, credential=req.credential
    )
    return jsonify(reset_token=token, expires_in=ttl)


@bp.post("/v1/password-resets/<reset_id>/complete")
def reset_complete(reset_id: str) -> ResponseReturnValue:
    req = body.parse(ResetCompleteIn)
    _svc().password_reset.complete(reset_id, reset_token=req.reset_token, new_password=req.new_password)
    return "", 204


def _change(kind: str, value: str) -> Response:
    principal = auth.require_bearer()
    change_id, ttl = _svc().contact_change.start(
        principal, kind=kind, value=value, step_up_token=request.headers.get("X-Step-Up-Token"), ip=client_ip()
    )
    return _accepted({"change_id": change_id, "expires_in": ttl})


@bp.post("/v1/account/phone")
def change_phone() -> ResponseReturnValue:
    return _change("phone", body.parse(PhoneChangeIn).phone)


@bp.post("/v1/account/email")
def change_email() -> ResponseReturnValue:
    return _change("email", body.parse(EmailChangeIn).email)


@bp.post("/v1/account/changes/<change_id>/verify")
def verify_change(change_id: str) -> ResponseReturnValue:
    principal = auth.require_bearer()
    req = body.parse(CodeIn)
    _svc().contact_change.verify(principal, change_id, req.code)
    return "", 204
