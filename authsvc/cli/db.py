"""``authsvc db``: the database schema (migrations, then the data steps that follow them)."""

from __future__ import annotations

import sys

import click

from ..store import migrate
from .common import dev_option, settings_for, url


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@dev_option
def db_upgrade(dev: bool) -> None:
    """Apply pending migrations (safe to run from several instances at once)."""
    settings = settings_for(dev, database_only=True)
    # a session-level advisory lock: on the direct URL when a transaction pooler is in front
    applied = migrate.upgrade(url(settings.migration_url), settings.migrations_dir)
    click.echo("\n".join(f"applied {n}" for n in applied) if applied else "database is current")
    backfill_email_skeletons(url(settings.migration_url))


def backfill_email_skeletons(database_url: str) -> None:
    """Data step after the SQL migrations: email skeletons of accounts made before 0026."""
    from ..services.core import email_skeletons
    from ..store import Store

    store = Store(database_url, max_size=2)
    try:
        filled, clashes = email_skeletons.backfill(store)
    finally:
        store.close()
    if filled:
        click.echo(f"email skeletons filled in: {filled}")
    for account_id in clashes:
        click.echo(f"WARNING: account {account_id} has a look-alike email of another account "
                   "(see `authsvc accounts show`)", err=True)


@db.command("status")
@dev_option
def db_status(dev: bool) -> None:
    """Show applied and pending migrations; exit 1 when not current."""
    settings = settings_for(dev, database_only=True)
    st = migrate.status(url(settings.database_url), settings.migrations_dir)
    click.echo(f"applied: {len(st.applied)}")
    for name in st.pending:
        click.echo(f"pending: {name}")
    for name in st.modified:
        click.echo(f"MODIFIED after being applied: {name}")
    if not st.current:
        sys.exit(1)
