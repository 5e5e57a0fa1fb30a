"""POST /v1/registrations and POST /v1/registrations/{id}/verify."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from .. import i18n
from . import body
from .container import container
from .context import request_context
from .schemas import RegistrationIn, RegistrationVerifyIn

bp = Blueprint("registration", __name__)


@bp.post("/v1/registrations")
def start() -> ResponseReturnValue:
    req = body.parse(RegistrationIn)
    started = container().registration.start(
        email=req.email, phone=req.phone, password=req.password, info=request_context(),
        locale=req.locale or request.accept_languages.best_match(i18n.LOCALES),
    )
    resp = jsonify(registration_id=started.registration_id, expires_in=started.expires_in)
    resp.status_code = 202
    return resp


@bp.post("/v1/registrations/<registration_id>/verify")
def verify(registration_id: str) -> ResponseReturnValue:
    req = body.parse(RegistrationVerifyIn)
    verified = container().registration.verify(
        registration_id, phone_code=req.phone_code, email_code=req.email_code
    )
    resp = jsonify(
        account_id=verified.account_id,
        enrollment_token=verified.enrollment_token,
        expires_in=verified.expires_in,
        device_token=verified.device_token,
    )
    resp.status_code = 201
    return resp
