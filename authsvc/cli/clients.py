"""``authsvc clients``: API clients of payment backends."""

from __future__ import annotations

import click

from ..config import operator_name
from .common import admin_container, dev_option, reason_option, safe


@click.group()
def clients() -> None:
    """API clients of payment backends (introspection, step-up redemption)."""


@clients.command("create")
@click.argument("name")
@reason_option
@dev_option
def clients_create(name: str, reason: str, dev: bool) -> None:
    """Create a client; its secret is shown once and stored hashed."""
    with admin_container(dev) as c:
        client_id, secret = c.clients.create(name, operator=operator_name(), reason=reason)
    click.echo(f"client_id: {client_id}")
    click.echo(f"client_secret: {secret}")
    click.echo("The secret is shown only now; store it in the backend's secret manager.", err=True)


@clients.command("list")
@dev_option
def clients_list(dev: bool) -> None:
    """List clients: id, name, created, active or revoked."""
    with admin_container(dev) as c:
        rows = c.clients.list()
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        click.echo(f"{r['id']}\t{safe(r['name'])}\t{r['created_at']:%Y-%m-%d %H:%M}\t{state}")


@clients.command("revoke")
@click.argument("client_id")
@reason_option
@dev_option
def clients_revoke(client_id: str, reason: str, dev: bool) -> None:
    """Revoke a client: its secret stops working at once."""
    with admin_container(dev) as c:
        done = c.clients.revoke(client_id, operator=operator_name(), reason=reason)
    if not done:
        raise click.ClickException(f"no active client {client_id}")
    click.echo(f"revoked {client_id}")
