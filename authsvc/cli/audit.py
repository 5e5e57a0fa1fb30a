"""``authsvc audit``: read and verify the audit log, sign a checkpoint."""

from __future__ import annotations

import json
import sys

import click

from .common import admin_container, dev_option, safe


@click.group()
def audit() -> None:
    """The audit log (keyed hash chain, append-only, signed checkpoints)."""


@audit.command("tail")
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="How many rows.")
@dev_option
def audit_tail(limit: int, dev: bool) -> None:
    """The newest audit rows: id, time, actor, action, account, detail."""
    with admin_container(dev) as c:
        rows = c.audit_log.tail(limit)
    for r in rows:
        account = r["account_id"] or "-"
        click.echo(f"{r['id']}\t{r['at']:%Y-%m-%dT%H:%M:%SZ}\t{safe(r['actor'])}\t{safe(r['action'])}\t"
                   f"{account}\t{json.dumps(r['detail'], sort_keys=True)}")


def _checkpoint(value: str) -> tuple[int, bytes]:
    last_id, sep, head = value.partition(":")
    try:
        if not sep or not last_id.isdigit() or len(head) != 64:
            raise ValueError
        return int(last_id), bytes.fromhex(head)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LAST_ID:HEAD (the head in 64 hex digits)") from None


@audit.command("verify")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="LAST_ID:HEAD",
              help="A checkpoint published earlier (log line or audit.checkpoint webhook): the log must "
                   "still contain that row with that hash. Repeatable.")
@dev_option
def audit_verify(checkpoints: tuple[str, ...], dev: bool) -> None:
    """Seal what is committed, recompute the keyed chains and check the checkpoints; exit 1 at
    the first row or seal that was changed, added or removed, when rows were cut off the end, or
    when a row is still not sealed a minute after it was written."""
    external = [_checkpoint(v) for v in checkpoints]
    with admin_container(dev) as c:
        result = c.audit_log.verify(external=external)
    if not result.intact:
        where = f" at row {result.broken_at}" if result.broken_at is not None else ""
        click.echo(f"audit log BROKEN{where} (after {result.checked} good rows): {result.problem}")
        sys.exit(1)
    legacy = f", {result.legacy} from before the keyed chain" if result.legacy else ""
    click.echo(f"audit log intact: {result.checked} rows ({result.sealed} sealed{legacy}), "
               f"{result.checkpoints} checkpoints")
    if result.last_checkpoint:
        cp = result.last_checkpoint
        click.echo(f"last checkpoint #{cp['checkpoint_id']} at {cp['at']}: rows up to {cp['last_id']}")
    for note in result.notes:
        click.echo(f"note: {note}")


@audit.command("checkpoint")
@dev_option
def audit_checkpoint(dev: bool) -> None:
    """Sign and publish the chain head now (log, audit.checkpoint webhook, audit_checkpoints)."""
    with admin_container(dev) as c:
        cp = c.audit_log.checkpoint()  # the running service (or `authsvc worker`) sends the webhook
    if cp is None:
        click.echo("nothing new since the last checkpoint")
        return
    click.echo(f"checkpoint #{cp.id}: {cp.last_id}:{cp.head.hex()}")
