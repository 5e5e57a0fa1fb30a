"""The one way a request handler reaches the services: ``container()``, typed."""

from __future__ import annotations

from flask import current_app

from ..container import Container


def container() -> Container:
    """The running app's :class:`~authsvc.container.Container` (``create_app`` put it there)."""
    built: Container = current_app.extensions["authsvc"]
    return built
