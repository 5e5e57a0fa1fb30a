"""Passkey sign-in: a challenge without allowCredentials, then one assertion."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..services.flows.passkey import PasskeyLogin
from . import auth, body
from .container import container
from .login import tokens_response
from .schemas import EmptyIn, PasskeyLoginIn

bp = Blueprint("passkey", __name__)


def _svc() -> PasskeyLogin:
    return container().passkey


@bp.post("/v1/login/passkey/options")
def options() -> ResponseReturnValue:
    body.parse(EmptyIn)
    ch = _svc().options()
    return jsonify(challenge_id=ch.challenge_id, expires_in=ch.expires_in, webauthn_options=ch.webauthn_options)


@bp.post("/v1/login/passkey")
def sign_in() -> ResponseReturnValue:
    req = body.parse(PasskeyLoginIn)
    return tokens_response(_svc().sign_in(challenge_id=req.challenge_id, credential=req.credential, info=auth.info()))
