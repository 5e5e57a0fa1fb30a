"""``authsvc keys``: token signing keys, and the encryption keys stored secrets are under."""

from __future__ import annotations

import sys

import click

from .. import errors
from ..config import operator_name
from .common import admin_container, dev_option, reason_option


@click.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@click.option("--activate-in", default=360, show_default=True, type=click.IntRange(0, 86400),
              help="Seconds the new key is published before it signs: longer than JWKS caching "
                   "(max-age 300 s) so verifiers know it before they see its tokens. At least 3 s in "
                   "any case, so every replica publishes it before any signs with it.")
@reason_option
@dev_option
def keys_rotate(activate_in: int, reason: str, dev: bool) -> None:
    """Publish a new signing key; the old one stays published until its tokens expired."""
    with admin_container(dev) as c:
        kid = c.keys.rotate(activate_in, actor=f"operator:{operator_name()}", reason=reason)
        row = next(r for r in c.keys.list() if r["kid"] == kid)
    lead = round((row["activate_at"] - row["created_at"]).total_seconds())
    click.echo(f"new signing key {kid} (signs in {lead}s)")


@keys.command("withdraw")
@click.argument("kid")
@reason_option
@dev_option
def keys_withdraw(kid: str, reason: str, dev: bool) -> None:
    """Unpublish a signing key now (compromised): its tokens stop verifying on every replica."""
    with admin_container(dev) as c:
        try:
            done = c.keys.withdraw(kid, actor=f"operator:{operator_name()}", reason=reason)
        except errors.Conflict as exc:
            raise click.ClickException(exc.detail) from None
    if not done:
        raise click.ClickException(f"no published key {kid!r} (see `authsvc keys list`)")
    click.echo(f"key {kid} withdrawn: its tokens no longer verify")


@keys.command("list")
@dev_option
def keys_list(dev: bool) -> None:
    """Every stored key: which one signs, which are published (JWKS) and until when."""
    with admin_container(dev) as c:
        rows = c.keys.list()
    click.echo("kid\tstate\tcreated\tsigns from\tpublished until")
    for r in rows:
        until = f"{r['publish_until']:%Y-%m-%dT%H:%M:%SZ}" if r["publish_until"] else "-"
        click.echo(f"{r['kid']}\t{r['state']}\t{r['created_at']:%Y-%m-%dT%H:%M:%SZ}\t"
                   f"{r['activate_at']:%Y-%m-%dT%H:%M:%SZ}\t{until}")


@keys.command("usage")
@dev_option
def keys_usage(dev: bool) -> None:
    """How many stored ciphertexts still depend on each encryption key id."""
    with admin_container(dev) as c:
        usage = c.reencryption.usage()
        configured = [kid for kid, _ in c.settings.encryption_keys]
    for kid in sorted(set(usage) | set(configured),
                      key=lambda k: (k not in configured, configured.index(k) if k in configured else 0, k)):
        rows = usage.get(kid, {})
        role = ("encrypts" if kid == configured[0] else "decrypts only") if kid in configured else "NOT CONFIGURED"
        detail = ", ".join(f"{what} {n}" for what, n in sorted(rows.items())) or "nothing"
        click.echo(f"{kid}\t{role}\t{sum(rows.values())}\t{detail}")
    old = [kid for kid in configured[1:] if not usage.get(kid)]
    if old:
        click.echo(f"no longer used: {', '.join(old)} (can be removed from AUTHSVC_ENCRYPTION_KEY)")


@keys.command("reencrypt")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000),
              help="Rows re-encrypted per transaction.")
@reason_option
@dev_option
def keys_reencrypt(batch_size: int, reason: str, dev: bool) -> None:
    """Re-encrypt every stored secret under the newest encryption key (the first in
    AUTHSVC_ENCRYPTION_KEY), in batches; resumable, audited. Then `keys usage` shows the old
    key unused and it can be removed."""
    with admin_container(dev) as c:
        report = c.reencryption.reencrypt(operator=operator_name(), reason=reason, batch_size=batch_size)
        remaining = {kid: n for kid, n in c.reencryption.usage().items() if kid != report.kid}
    for what, n in report.done.items():
        failed = report.failed.get(what, 0)
        click.echo(f"{what}: {n} re-encrypted under {report.kid}" + (f", {failed} UNDECRYPTABLE" if failed else ""))
    if remaining:
        left = "; ".join(f"{kid}: {sum(rows.values())}" for kid, rows in sorted(remaining.items()))
        click.echo(f"still under older keys: {left} (rerun to continue)")
    if any(report.failed.values()):
        sys.exit(1)
