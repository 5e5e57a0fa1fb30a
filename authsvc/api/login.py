"""Login, second factor, refresh, logout."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from ..container import Container
from ..services.core.sessions import TokenPair
from ..services.flows.login import EnrollmentGrant
from . import auth, body
from .container import container
from .schemas import LoginIn, MfaIn, PasswordChangeIn, RefreshIn, ReportIn

bp = Blueprint("login", __name__)


def _svc() -> Container:
    return container()


def tokens_response(pair: TokenPair) -> Response:
    out = {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "session_id": pair.session_id,
        "acr": pair.acr,
        "amr": pair.amr,
    }
    if pair.device_token is not None:  # logins carry it; a refresh does not (the device keeps its own)
        out["device_token"] = pair.device_token
    return jsonify(out)


@bp.post("/v1/login")
def login() -> ResponseReturnValue:
    req = body.parse(LoginIn)
    ch = _svc().login.password(email=req.email, password=req.password, info=auth.info(),
                               login_pass=req.login_pass)
    out = {"mfa_token": ch.mfa_token, "expires_in": ch.expires_in, "methods": ch.methods}
    if ch.webauthn_options is not None:
        out["webauthn_options"] = ch.webauthn_options
    return jsonify(out)


@bp.post("/v1/login/mfa")
def mfa() -> ResponseReturnValue:
    req = body.parse(MfaIn)
    result = _svc().login.second_factor(
        mfa_token=req.mfa_token, method=req.method, code=req.code, credential=req.credential, info=auth.info()
    )
    if isinstance(result, EnrollmentGrant):
        return jsonify(enrollment_token=result.enrollment_token, expires_in=result.expires_in)
    return tokens_response(result)


@bp.post("/v1/token/refresh")
def refresh() -> ResponseReturnValue:
    req = body.parse(RefreshIn)
    return tokens_response(_svc().sessions.refresh(req.refresh_token, auth.info()))


@bp.post("/v1/logout")
def logout() -> ResponseReturnValue:
    principal = auth.require_bearer()
    _svc().sessions.logout(principal)
    return "", 204


@bp.post("/v1/password-change")
def password_change() -> ResponseReturnValue:
    req = body.parse(PasswordChangeIn)
    _svc().password_change.change(req.password_change_token, req.new_password)
    return "", 204


@bp.post("/v1/security/reports")
def report() -> ResponseReturnValue:
    req = body.parse(ReportIn)
    _svc().reports.report(req.report_token)
    return "", 202
