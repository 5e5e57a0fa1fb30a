"""What every command shares: its settings (``--dev`` before or after the command), the one
container context manager, the ``--reason`` option and safe output of stored values."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .. import errors
from ..config import Settings
from ..store import embedded

if TYPE_CHECKING:
    from ..container import Container

DB_URL = "authsvc.database_url"  # ctx.meta key: the database the command uses (for messages)


def root_dev() -> bool:
    """Whether ``--dev`` was given to the whole command (before or after the subcommand)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("dev"))


def dev_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Hands the command ``dev``: whether ``--dev`` was given (before or after the subcommand)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["dev"] = bool(kwargs.get("dev")) or root_dev()
        return command(*args, **kwargs)

    return wrapper


def settings_for(dev: bool, *, database_only: bool = False, bind: str | None = None,
                 new_dev_data: bool = False) -> Settings:
    """``new_dev_data``: only ``serve --dev`` may make a new dev database; every other command
    uses the project's (``config.find_dev_data_dir``) or refuses, saying what to do."""
    dev = dev or root_dev()
    try:
        settings = Settings.from_env(dev=dev, database_only=database_only, bind=bind, new_dev_data=new_dev_data)
    except errors.ConfigError as exc:
        raise click.ClickException(f"refusing to start: {exc.detail}") from None
    if not settings.database_url and dev:
        try:
            url = embedded.start(settings.data_dir.resolve() / "pgdata")
        except errors.ConfigError as exc:
            raise click.ClickException(exc.detail) from None
        settings = settings.replace(database_url=url)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[DB_URL] = settings.database_url
    return settings


def url(value: str | None) -> str:
    """A database URL that ``settings_for`` made sure of (``Settings.from_env`` refuses to go on
    without one outside --dev; with --dev the embedded server's)."""
    assert value is not None
    return value


@contextmanager
def admin_container(dev: bool) -> Iterator[Container]:
    """The services of a command (``with admin_container(dev) as c:``), closed
    (``Container.close``) when the block ends, however it ends."""
    from ..app import build_container

    container = build_container(settings_for(dev))
    try:
        yield container
    finally:
        container.close()


def safe(value: object) -> str:
    """A value for a line of CLI output: control and format characters (CR, LF, tab, ESC and
    terminal sequences, bidi overrides, line separators) become visible escapes, so text an
    attacker chose (a typed email, a client name, an error message) cannot forge lines, move
    the cursor or recolour the terminal."""
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def _check_reason(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..services.platform.audit import check_reason

    if value is None:
        return None
    try:
        return check_reason(value)
    except errors.InvalidRequest as exc:
        raise click.BadParameter(exc.detail) from None


reason_option = click.option("--reason", required=True, callback=_check_reason,
                             help="Why: written to the audit log (at least 5 characters with a letter, "
                                  "e.g. a ticket and a few words).")
