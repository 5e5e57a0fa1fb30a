"""``authsvc accounts`` (incident response on one account) and ``authsvc incident`` (on every
account)."""

from __future__ import annotations

import click

from .. import errors
from ..config import operator_name
from .common import admin_container, dev_option, reason_option, safe


@click.group()
def accounts() -> None:
    """Incident response on one account (by account id or email)."""


@accounts.command("show")
@click.argument("account")
@dev_option
def accounts_show(account: str, dev: bool) -> None:
    """Status, factors and live sessions of one account."""
    with admin_container(dev) as c:
        try:
            info = c.admin.show(account)
        except errors.NotFound as exc:
            raise click.ClickException(exc.detail) from None
    for key, value in info.items():
        click.echo(f"{key}: {safe(value)}")


def _account_command(name: str, method: str, help_text: str) -> None:
    @accounts.command(name, help=help_text)
    @click.argument("account")
    @reason_option
    @dev_option
    def command(account: str, reason: str, dev: bool) -> None:
        with admin_container(dev) as c:
            try:
                account_id = getattr(c.admin, method)(account, operator=operator_name(), reason=reason)
            except (errors.NotFound, errors.Conflict) as exc:
                raise click.ClickException(exc.detail) from None
        click.echo(f"{name}: {account_id}")


_account_command("freeze", "freeze", "Freeze the account and revoke every session.")


@accounts.command("unfreeze")
@click.argument("account")
@click.option("--keep-password", is_flag=True,
              help="Do not require a password reset before the next sign-in (audited). Only when the "
                   "freeze was a false alarm: after a takeover the attacker knows the password.")
@reason_option
@dev_option
def accounts_unfreeze(account: str, keep_password: bool, reason: str, dev: bool) -> None:
    """Make a frozen account active again; the way back in is a password reset (SMS code to the
    verified phone and a second factor)."""
    with admin_container(dev) as c:
        try:
            account_id = c.admin.unfreeze(account, operator=operator_name(), reason=reason,
                                          keep_password=keep_password)
        except (errors.NotFound, errors.Conflict) as exc:
            raise click.ClickException(exc.detail) from None
    after = ("the password is kept" if keep_password
             else "a password reset (SMS code + second factor) is required before the next sign-in")
    click.echo(f"unfreeze: {account_id} ({after})")


_account_command("revoke-sessions", "revoke_sessions", "Revoke every session of the account.")
_account_command("require-password-change", "require_password_change",
                 "Force a new password at the next login; revokes every session.")
_account_command("reset-factors", "reset_factors",
                 "Remove every second factor and recovery code; the next login enrolls anew via SMS "
                 "(password sign-in is turned back on if it was off).")


@click.group()
def incident() -> None:
    """Fleet-wide incident response."""


@incident.command("require-password-change")
@click.option("--all", "all_accounts", is_flag=True, required=True,
              help="Every account that exists when the run begins (required: this is fleet-wide).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000),
              help="Accounts per transaction.")
@reason_option
@dev_option
def incident_require_password_change(all_accounts: bool, batch_size: int, reason: str, dev: bool) -> None:
    """Force a new password on every account and sign every session out; resumable."""
    with admin_container(dev) as c:
        incident_id, total, resumed = c.incidents.require_password_change_all(
            operator=operator_name(), reason=reason, batch_size=batch_size,
            on_batch=lambda n: click.echo(f"  batch of {n} done"),
        )
    click.echo(f"incident {incident_id} {'resumed and ' if resumed else ''}finished: {total} accounts")
