"""The signed-in account and its sessions."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from .. import errors
from ..container import Container
from . import auth, body
from .container import container
from .schemas import AccountPatchIn

bp = Blueprint("account", __name__)


def _svc() -> Container:
    return container()


@bp.get("/v1/account")
def account() -> ResponseReturnValue:
    principal = auth.require_bearer()
    return jsonify(_svc().accounts.describe(principal.account_id))


@bp.patch("/v1/account")
def update_account() -> ResponseReturnValue:
    actor = auth.require_actor()
    req = body.parse(AccountPatchIn)
    if req.locale is not None and actor.enrollment_token_id is not None:
        raise errors.InsufficientScope("an enrollment token can only enroll the first second factor")
    if req.password_login is not None:
        _svc().factors.set_password_login(actor, req.password_login)
    if req.locale is not None:
        _svc().accounts.set_locale(actor.account_id, req.locale)
    return jsonify(_svc().accounts.describe(actor.account_id))


@bp.get("/v1/sessions")
def sessions() -> ResponseReturnValue:
    principal = auth.require_bearer()
    return jsonify(_svc().sessions.list(principal))


@bp.delete("/v1/sessions/<session_id>")
def revoke(session_id: str) -> ResponseReturnValue:
    principal = auth.require_bearer()
    _svc().sessions.revoke(principal, session_id)
    return "", 204


@bp.delete("/v1/sessions")
def revoke_others() -> ResponseReturnValue:
    principal = auth.require_bearer()
    _svc().sessions.revoke_others(principal)
    return "", 204
