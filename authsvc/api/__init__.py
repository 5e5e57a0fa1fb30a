"""HTTP layer: Flask blueprints that parse, call one service, and serialize."""

from __future__ import annotations

from flask import Flask

from . import (
    account,
    factors,
    health,
    introspect,
    jwks,
    login,
    passkey,
    payees,
    problems,
    recovery,
    registration,
    report_page,
    spec,
    step_up,
)


def register(app: Flask) -> None:
    problems.register(app)
    for module in (health, spec, jwks, registration, login, passkey, account, factors, step_up, payees, recovery,
                   introspect, report_page):
        app.register_blueprint(module.bp)
    report_page.install(app)
