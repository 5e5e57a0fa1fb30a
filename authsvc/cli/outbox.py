"""``authsvc outbox``: undelivered messages and putting failed ones back in line (delivery
itself is ``authsvc worker``, in ``serve.py``)."""

from __future__ import annotations

import click

from ..config import operator_name
from .common import admin_container, dev_option, reason_option, safe


@click.group()
def outbox() -> None:
    """The outbox of SMS, email and webhooks."""


@outbox.command("status")
@dev_option
def outbox_status(dev: bool) -> None:
    """Undelivered messages: pending (being retried) and failed (gave up after 12 attempts)."""
    with admin_container(dev) as c:
        depth = c.outbox.depth()
        problems = c.outbox.recent_errors()
    click.echo(f"pending: {depth['pending']}\nfailed: {depth['failed']}")
    if problems:
        click.echo("last errors (newest first):")
    for r in problems:
        state = f"failed {r['failed_at']:%Y-%m-%dT%H:%M:%SZ}" if r["failed_at"] else \
            f"next try {r['available_at']:%Y-%m-%dT%H:%M:%SZ}"
        click.echo(f"  #{r['id']}\t{safe(r['kind'])}\tattempts {r['attempts']}\t{state}\t{safe(r['last_error'])}")


@outbox.command("retry")
@reason_option
@dev_option
def outbox_retry(reason: str, dev: bool) -> None:
    """Put failed messages back in line (run the worker, or let the service deliver them)."""
    with admin_container(dev) as c:
        n = c.outbox.requeue_failed(operator=operator_name(), reason=reason)
    click.echo(f"requeued {n}")
