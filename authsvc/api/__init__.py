"""HTTP layer: Flask blueprints that parse, call one service, and serialize."""

from __future__ import annotations

from flask import Flask

from . import body, health, problems, registration


def register(app: Flask) -> None:
    problems.register(app)
    for module in (health, registration):
        app.register_blueprint(module.bp)
