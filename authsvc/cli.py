"""The ``authsvc`` command: serve, worker, database and operator commands."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from . import errors
from .config import Settings, operator_name
from .store import embedded, migrate


def _settings(dev: bool, *, database_only: bool = False) -> Settings:
    try:
        settings = Settings.from_env(dev=dev, database_only=database_only)
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

        import signal

        # SIGTERM ends the server like Ctrl+C, so the embedded PostgreSQL is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
            # gthread: keep-alive connections, and argon2 (which releases the GIL) runs in threads
            # behind the hash gate, so a saturated worker sheds unknown devices at once instead
            # of leaving requests in the listen backlog (measured: benchmarks/perf.py).
            self.cfg.set("worker_class", settings.worker_class)
            self.cfg.set("threads", settings.threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("forwarded_allow_ips", "")  # client IPs come from AUTHSVC_TRUSTED_PROXIES only
            self.cfg.set("control_socket_disable", True)  # no writable $HOME in the image

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
    settings = _settings(dev, database_only=True)
    applied = migrate.upgrade(settings.database_url, settings.migrations_dir)
    click.echo("\n".join(f"applied {n}" for n in applied) if applied else "database is current")


@db.command("status")
@click.option("--dev", is_flag=True)
def db_status(dev: bool) -> None:
    """Show applied and pending migrations; exit 1 when not current."""
    settings = _settings(dev, database_only=True)
    st = migrate.status(settings.database_url, settings.migrations_dir)
    click.echo(f"applied: {len(st.applied)}")
    for name in st.pending:
        click.echo(f"pending: {name}")
    for name in st.modified:
        click.echo(f"MODIFIED after being applied: {name}")
    if not st.current:
        sys.exit(1)


def _container(dev: bool):
    from .app import build_container

    return build_container(_settings(dev))


_reason = click.option("--reason", required=True, help="Why: written to the audit log.")
_dev = click.option("--dev", is_flag=True, help="Use the --dev settings (embedded database).")


@main.group()
def clients() -> None:
    """API clients of payment backends (introspection, step-up redemption)."""


@clients.command("create")
@click.argument("name")
@_reason
@_dev
def clients_create(name: str, reason: str, dev: bool) -> None:
    """Create a client; its secret is shown once and stored hashed."""
    c = _container(dev)
    try:
        client_id, secret = c.clients.create(name, operator=operator_name(), reason=reason)
    finally:
        c.close()
    click.echo(f"client_id: {client_id}")
    click.echo(f"client_secret: {secret}")
    click.echo("The secret is shown only now; store it in the backend's secret manager.", err=True)


@clients.command("list")
@_dev
def clients_list(dev: bool) -> None:
    c = _container(dev)
    try:
        rows = c.clients.list()
    finally:
        c.close()
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        click.echo(f"{r['id']}\t{r['name']}\t{r['created_at']:%Y-%m-%d %H:%M}\t{state}")


@clients.command("revoke")
@click.argument("client_id")
@_reason
@_dev
def clients_revoke(client_id: str, reason: str, dev: bool) -> None:
    c = _container(dev)
    try:
        done = c.clients.revoke(client_id, operator=operator_name(), reason=reason)
    finally:
        c.close()
    if not done:
        raise click.ClickException(f"no active client {client_id}")
    click.echo(f"revoked {client_id}")


@main.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@click.option("--activate-in", default=360, show_default=True, type=click.IntRange(0, 86400),
              help="Seconds the new key is published before it signs: longer than JWKS caching "
                   "(max-age 300 s) so verifiers know it before they see its tokens.")
@_reason
@_dev
def keys_rotate(activate_in: int, reason: str, dev: bool) -> None:
    """Publish a new signing key; the old one stays published until its tokens expired."""
    c = _container(dev)
    try:
        kid = c.keys.rotate(activate_in, actor=f"operator:{operator_name()}", reason=reason)
    finally:
        c.close()
    click.echo(f"new signing key {kid} (signs in {activate_in}s)")


@main.group()
def accounts() -> None:
    """Incident response on one account (by account id or email)."""


@accounts.command("show")
@click.argument("account")
@_dev
def accounts_show(account: str, dev: bool) -> None:
    c = _container(dev)
    try:
        info = c.admin.show(account)
    except errors.NotFound as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        c.close()
    for key, value in info.items():
        click.echo(f"{key}: {value}")


def _account_command(name: str, method: str, help_text: str) -> None:
    @accounts.command(name, help=help_text)
    @click.argument("account")
    @_reason
    @_dev
    def command(account: str, reason: str, dev: bool) -> None:
        c = _container(dev)
        try:
            account_id = getattr(c.admin, method)(account, operator=operator_name(), reason=reason)
        except (errors.NotFound, errors.Conflict) as exc:
            raise click.ClickException(exc.detail) from None
        finally:
            c.close()
        click.echo(f"{name}: {account_id}")


_account_command("freeze", "freeze", "Freeze the account and revoke every session.")
_account_command("unfreeze", "unfreeze", "Make a frozen account active again.")
_account_command("revoke-sessions", "revoke_sessions", "Revoke every session of the account.")
_account_command("require-password-change", "require_password_change",
                 "Force a new password at the next login; revokes every session.")
_account_command("reset-factors", "reset_factors",
                 "Remove every second factor and recovery code; the next login enrolls anew via SMS.")


@main.group()
def incident() -> None:
    """Fleet-wide incident response."""


@incident.command("require-password-change")
@click.option("--all", "all_accounts", is_flag=True, required=True,
              help="Every account that exists when the run begins (required: this is fleet-wide).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000))
@_reason
@_dev
def incident_require_password_change(all_accounts: bool, batch_size: int, reason: str, dev: bool) -> None:
    """Force a new password on every account and sign every session out; resumable."""
    c = _container(dev)
    try:
        incident_id, total, resumed = c.incidents.require_password_change_all(
            operator=operator_name(), reason=reason, batch_size=batch_size,
            on_batch=lambda n: click.echo(f"  batch of {n} done"),
        )
    finally:
        c.close()
    click.echo(f"incident {incident_id} {'resumed and ' if resumed else ''}finished: {total} accounts")


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("tail")
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@_dev
def audit_tail(limit: int, dev: bool) -> None:
    c = _container(dev)
    try:
        rows = c.audit_log.tail(limit)
    finally:
        c.close()
    for r in rows:
        account = r["account_id"] or "-"
        click.echo(f"{r['id']}\t{r['at']:%Y-%m-%dT%H:%M:%SZ}\t{r['actor']}\t{r['action']}\t{account}\t"
                   f"{json.dumps(r['detail'], sort_keys=True)}")


@audit.command("verify")
@_dev
def audit_verify(dev: bool) -> None:
    """Recompute the hash chain; exit 1 at the first row that was changed, added or removed."""
    c = _container(dev)
    try:
        checked, broken = c.audit_log.verify()
    finally:
        c.close()
    if broken is not None:
        click.echo(f"audit log BROKEN at row {broken} (after {checked} good rows)")
        sys.exit(1)
    click.echo(f"audit log intact: {checked} rows")


@main.group()
def outbox() -> None:
    """The outbox of SMS, email and webhooks."""


@outbox.command("status")
@_dev
def outbox_status(dev: bool) -> None:
    """Undelivered messages: pending (being retried) and failed (gave up after 12 attempts)."""
    c = _container(dev)
    try:
        depth = c.outbox.depth()
    finally:
        c.close()
    click.echo(f"pending: {depth['pending']}\nfailed: {depth['failed']}")


@outbox.command("retry")
@_reason
@_dev
def outbox_retry(reason: str, dev: bool) -> None:
    """Put failed messages back in line (run the worker, or let the service deliver them)."""
    c = _container(dev)
    try:
        n = c.outbox.requeue_failed(operator=operator_name(), reason=reason)
    finally:
        c.close()
    click.echo(f"requeued {n}")


if __name__ == "__main__":  # pragma: no cover
    main()
