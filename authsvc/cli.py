"""The ``authsvc`` command: serve, worker, database and operator commands."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from . import errors
from .config import Settings
from .store import embedded, migrate


def _settings(dev: bool) -> Settings:
    try:
        settings = Settings.from_env(dev=dev)
    except errors.ConfigError as exc:
        raise click.ClickException(f"refusing to start: {exc.detail}") from None
    if not settings.database_url and dev:
        url = embedded.start(settings.data_dir.resolve() / "pgdata")
        settings = settings.replace(database_url=url)
    return settings


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """authsvc: two-factor authentication service."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--dev", is_flag=True, help="Embedded defaults: local PostgreSQL, console SMS and email.")
def serve(dev: bool) -> None:
    """Serve the HTTP API (gunicorn; the Werkzeug server with --dev)."""
    settings = _settings(dev)
    if dev:
        applied = migrate.upgrade(settings.database_url, settings.migrations_dir)
        for name in applied:
            click.echo(f"applied migration {name}")
        from .app import create_app

        host, _, port = settings.bind.rpartition(":")
        app = create_app(settings)
        click.echo(f"authsvc (dev) listening on http://{host}:{port}  database: {settings.database_url}")
        app.run(host=host, port=int(port), threaded=True, use_reloader=False)
        return
    _gunicorn(settings)


def _gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", settings.bind)
            self.cfg.set("workers", settings.workers)
            self.cfg.set("worker_class", "sync")
            self.cfg.set("accesslog", "-")
            self.cfg.set("forwarded_allow_ips", "")  # client IPs come from AUTHSVC_TRUSTED_PROXIES only

        def load(self) -> Any:
            return create_app(settings)

    _App().run()


@main.command()
@click.option("--dev", is_flag=True)
@click.option("--once", is_flag=True, help="Drain what is due and exit.")
def worker(dev: bool, once: bool) -> None:
    """Deliver the outbox (SMS, email, webhooks) with retries."""
    from .app import build_container

    container = build_container(_settings(dev))
    try:
        if once:
            n = 0
            while delivered := container.outbox.deliver_due():
                n += delivered
            click.echo(f"delivered {n}")
        else:
            container.outbox.run_forever(idle_seconds=2.0)
    finally:
        container.close()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--dev", is_flag=True)
def db_upgrade(dev: bool) -> None:
    """Apply pending migrations (safe to run from several instances at once)."""
    settings = _settings(dev)
    applied = migrate.upgrade(settings.database_url, settings.migrations_dir)
    click.echo("\n".join(f"applied {n}" for n in applied) if applied else "database is current")


@db.command("status")
@click.option("--dev", is_flag=True)
def db_status(dev: bool) -> None:
    """Show applied and pending migrations; exit 1 when not current."""
    settings = _settings(dev)
    st = migrate.status(settings.database_url, settings.migrations_dir)
    click.echo(f"applied: {len(st.applied)}")
    for name in st.pending:
        click.echo(f"pending: {name}")
    for name in st.modified:
        click.echo(f"MODIFIED after being applied: {name}")
    if not st.current:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
