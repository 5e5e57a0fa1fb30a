"""``authsvc throttles``: who waits now against the list attack, and lifting a wait."""

from __future__ import annotations

import click

from .. import errors
from ..config import operator_name
from .common import admin_container, dev_option, reason_option, safe


@click.group()
def throttles() -> None:
    """Failure budgets against the list attack: who waits now, and lifting a wait."""


@throttles.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="At most this many waits and this many locks.")
@dev_option
def throttles_list(limit: int, dev: bool) -> None:
    """Current waits: clients, networks, emails (masked) and known devices past their failure
    budget, accounts whose second-factor lock holds unknown devices, and the attack state."""
    with admin_container(dev) as c:
        if not c.settings.redis_url:
            click.echo("note: no AUTHSVC_REDIS_URL; each server process keeps its own counters, not shown here")
        waits = c.throttle.current()[:limit]
        locks = c.admin.locked(limit=limit)
        attack = c.throttle.attack_state()
    for w in waits:
        click.echo(f"{safe(w['scope']):<8} {safe(w['key']):<48} {safe(w['label']):<40} level {w['level']:<3} "
                   f"{w['seconds_left']}s left")
    for lock in locks:
        click.echo(f"{'account':<8} {'account:' + lock['account_id']:<48} {safe(lock['email']):<40} "
                   f"level {lock['lock_count']:<3} {lock['seconds_left']}s left (second-factor lock)")
    if not waits and not locks:
        click.echo("no throttles")
    click.echo(f"attack: {'ACTIVE' if attack['active'] else 'none'} ({attack['this_minute']} failed or refused "
               f"logins this minute, {attack['last_minute']} last minute; level {attack['level']})")


@throttles.command("lift")
@click.argument("subject")
@reason_option
@dev_option
def throttles_lift(subject: str, reason: str, dev: bool) -> None:
    """Lift a wait: client:IP, network:IP-or-CIDR, email:ADDRESS-or-digest, device:TOKEN_ID, or
    account:ACCOUNT (an account's second-factor lock). Audited with the reason."""
    with admin_container(dev) as c:
        try:
            if subject.startswith("account:"):
                account_id = c.admin.lift_lock(subject.removeprefix("account:"), operator=operator_name(),
                                               reason=reason)
                click.echo(f"lifted the second-factor lock of account {account_id}")
                return
            found, waiting = c.throttle.operator_lift(subject, operator=operator_name(), reason=reason)
        except (errors.NotFound, errors.InvalidRequest) as exc:
            raise click.ClickException(exc.detail) from None
    click.echo(f"lifted {found.scope} {found.label}" + ("" if waiting else " (it was not waiting)"))
