"""The ``authsvc`` command: serve, worker, database and operator commands.

This module assembles the command (global options, the one-line failure, the command groups);
each group lives in a module of its own: ``serve.py`` (serve, worker), ``db.py``,
``clients.py``, ``keys.py``, ``accounts.py`` (accounts, incident), ``audit.py``, ``outbox.py``,
``throttles.py``; ``common.py`` holds what they share (settings, ``admin_container``,
``--reason``, safe output).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from .. import errors, logs
from . import accounts, audit, clients, db, keys, outbox, serve, throttles
from .common import DB_URL, root_dev

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Options of the whole command, accepted before or after the subcommand.
_GLOBAL_FLAGS = ("--dev",)
_GLOBAL_VALUED = ("--log-level",)


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with ``--dev`` and ``--log-level X`` moved in front of the subcommand, wherever
    they were given (``authsvc clients list --dev`` = ``authsvc --dev clients list``); nothing
    after a ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg in _GLOBAL_VALUED and i + 1 < len(args):
            front.extend(args[i:i + 2])
            i += 1
        elif arg.partition("=")[0] in _GLOBAL_VALUED and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class _Main(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Every failure of a command ends as one line saying what to do, exit status 1 (the
        traceback only with ``--log-level DEBUG``)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit,
                KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - turned into the one line below
            if logging.getLogger("authsvc").isEnabledFor(logging.DEBUG):
                logging.getLogger("authsvc.cli").exception("command failed")
            raise click.ClickException(_explain(exc, ctx.meta.get(DB_URL))) from None


def _explain(exc: BaseException, database_url: str | None) -> str:
    """One line for an operator: what went wrong and what to do about it."""
    from ..store import diagnose

    where = f" at {logs.redact(database_url)}" if database_url else ""
    dev = " --dev" if root_dev() else ""
    if isinstance(exc, errors.SchemaNotCurrent):
        return (f"the database{where} is not migrated for this version ({exc.what}): "
                f"run `authsvc db upgrade{dev}`, then retry")
    if isinstance(exc, errors.StoreUnavailable):
        cause = diagnose(database_url) if database_url else None
        return (f"cannot use the database{where} ({cause or 'it stopped answering'}): start PostgreSQL "
                f"or fix AUTHSVC_DATABASE_URL, then retry")
    if isinstance(exc, errors.UniqueViolation):
        return f"the database refused a duplicate ({exc.constraint}): check what already exists, then retry"
    if isinstance(exc, errors.StoreError):
        origin = exc.__cause__
        text = f"{type(origin).__name__}: {' '.join(str(origin).split())[:200]}" if origin else exc.detail
        hint = ("the database role lacks a privilege: use the migration role for `db upgrade`, the service "
                "role otherwise (README, Database roles)") if "InsufficientPrivilege" in text else \
               "check the database's state and logs, then retry"
        return f"database error{where} ({text}): {hint}"
    if isinstance(exc, errors.DecryptionError):
        return (f"{exc.detail}: AUTHSVC_ENCRYPTION_KEY must include every key id stored secrets were "
                f"encrypted with (see `authsvc keys usage`)")
    if isinstance(exc, errors.ConfigError):
        return f"refusing to start: {exc.detail}"
    if isinstance(exc, errors.AuthsvcError):
        return exc.detail
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}: check the path and its permissions"
    return (f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]} "
            f"(run again with --log-level DEBUG for the traceback, and report it)")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(_LEVELS, case_sensitive=False),
              help="Level of authsvc's own log lines (JSON, one per line on stdout); other libraries log "
                   "warnings only. Accepted before or after the command.")
@click.option("--dev", is_flag=True,
              help="Dev settings: embedded PostgreSQL under .authsvc-dev/, console SMS and email, random "
                   "local secrets. Accepted before or after the command.")
def main(log_level: str, dev: bool) -> None:
    """authsvc: two-factor authentication service for payment apps.

    Configuration comes from AUTHSVC_* environment variables (see the README); operator
    changes are written to the audit log with their --reason.
    """
    logs.configure(log_level)
    ctx = click.get_current_context()
    if ctx.invoked_subcommand not in (None, "serve", "worker") and log_level.upper() != "DEBUG":
        # An operator command that fails says why in its one error line; the pool's and the
        # circuit breaker's warnings on the way there would only repeat it. A filter on those
        # two loggers only (not their children), for this command only.
        names = ("psycopg.pool", "authsvc.store")
        for name in names:
            logging.getLogger(name).addFilter(_errors_only)

        def remove_filters() -> None:
            for name in names:
                logging.getLogger(name).removeFilter(_errors_only)

        ctx.call_on_close(remove_filters)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


for _command in (serve.serve, serve.worker, db.db, clients.clients, keys.keys, accounts.accounts,
                 accounts.incident, audit.audit, outbox.outbox, throttles.throttles):
    main.add_command(_command)

__all__ = ["hoist_global_options", "main"]
