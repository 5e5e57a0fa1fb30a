"""The ``authsvc`` command: serve, worker, database and operator commands."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from . import errors, logs
from .config import Settings, operator_name
from .store import embedded, migrate

if TYPE_CHECKING:
    from .container import Container

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
            raise click.ClickException(_explain(exc, ctx.meta.get(_DB_URL))) from None


_DB_URL = "authsvc.database_url"  # ctx.meta key: the database the command uses (for messages)


def _explain(exc: BaseException, database_url: str | None) -> str:
    """One line for an operator: what went wrong and what to do about it."""
    from .store import diagnose

    where = f" at {logs.redact(database_url)}" if database_url else ""
    dev = " --dev" if _root_dev() else ""
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


def _root_dev() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("dev"))


def _dev(command: Callable[..., Any]) -> Callable[..., Any]:
    """Hands the command ``dev``: whether ``--dev`` was given (before or after the subcommand)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["dev"] = bool(kwargs.get("dev")) or _root_dev()
        return command(*args, **kwargs)

    return wrapper


def _settings(dev: bool, *, database_only: bool = False, bind: str | None = None,
              new_dev_data: bool = False) -> Settings:
    """``new_dev_data``: only ``serve --dev`` may make a new dev database; every other command
    uses the project's (``config.find_dev_data_dir``) or refuses, saying what to do."""
    dev = dev or _root_dev()
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
        ctx.meta[_DB_URL] = settings.database_url
    return settings


def _url(url: str | None) -> str:
    """A database URL that ``_settings`` made sure of (``Settings.from_env`` refuses to go on
    without one outside --dev; with --dev the embedded server's)."""
    assert url is not None
    return url


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


@main.command()
@click.option("--bind", metavar="HOST:PORT",
              help="Where to listen (overrides AUTHSVC_BIND; default 0.0.0.0:8000, 127.0.0.1:8000 with --dev). "
                   "With --dev, PUBLIC_URL and ORIGINS follow it unless set.")
@_dev
def serve(bind: str | None, dev: bool) -> None:
    """Serve the HTTP API (gunicorn; the Werkzeug server with --dev)."""
    settings = _settings(dev, bind=bind, new_dev_data=True)
    host, port = split_bind(settings.bind)
    if not dev:
        problems = settings.serving_problems()
        if problems:
            raise click.ClickException("refusing to start: " + "; ".join(problems))
    _check_can_listen(host, port)  # before anything claims to listen (or migrates)
    if dev:
        applied = migrate.upgrade(_url(settings.database_url), settings.migrations_dir)
        for name in applied:
            click.echo(f"applied migration {name}")
        _backfill_email_skeletons(_url(settings.database_url))
        import signal

        from werkzeug.serving import make_server

        from .app import create_app

        # SIGTERM ends the server like Ctrl+C, so the embedded PostgreSQL is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        app = create_app(settings)
        try:
            server = make_server(host, port, app, threaded=True)
        except OSError as exc:
            app.extensions["authsvc"].close()
            raise click.ClickException(f"cannot listen on {settings.bind}: {exc.strerror or exc}") from None
        if settings.metrics_bind:
            from .metrics_server import MetricsServer

            try:
                MetricsServer(settings.metrics_bind, app.extensions["authsvc"].metrics.render).start()
                click.echo(f"metrics on http://{settings.metrics_bind}/metrics")
            except OSError as exc:
                click.echo(f"metrics listener {settings.metrics_bind} failed ({exc}); serving without metrics",
                           err=True)
        click.echo(f"authsvc (dev) listening on http://{host}:{server.server_port}  "
                   f"public URL: {settings.public_url}  database: {logs.redact(settings.database_url or '')}")
        try:
            server.serve_forever()
        finally:
            server.server_close()
            app.extensions["authsvc"].close()
        return
    _gunicorn(settings)


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def _check_can_listen(host: str, port: int) -> None:
    """Fail clearly, before claiming to listen, when ``host:port`` is taken or not ours."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# The container a gunicorn worker process serves (made in the worker, after the fork).
_served: list[Any] = []


def _stop_sender_on_sigterm(worker: Any) -> None:
    """gunicorn ``post_worker_init``: on SIGTERM the outbox sender stops after the message in
    flight while the worker finishes its requests (gunicorn's own handler still runs)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        for container in _served:
            container.outbox.request_stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _close_worker(server: Any, worker: Any) -> None:
    """gunicorn ``worker_exit``: wait for the outbox sender, close the pool (no-op in the arbiter)."""
    while _served:
        _served.pop().close()


def _gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from . import drain, metrics_server
    from .api.body import MAX_BODY
    from .workers import WORKER_CLASSES, AppAccessLogger, configure as configure_workers

    # before the app (and prometheus_client) is loaded: every worker writes to this directory
    samples_dir, made_here = metrics_server.prepare_multiprocess_dir(
        str(settings.metrics_dir) if settings.metrics_dir else None
    )
    from .app import create_app
    from .metrics import OutboxDepthCollector
    from .store import query_once

    listener: list[metrics_server.MetricsServer] = []

    def when_ready(arbiter: Any) -> None:  # in the master, which serves no API request
        logging.getLogger("authsvc").info("listening on %s with %s worker(s)", settings.bind, settings.workers)
        if settings.metrics_bind:
            depth = OutboxDepthCollector(lambda: dict(query_once(_url(settings.database_url), "outbox_depth") or {}))
            try:
                server = metrics_server.MetricsServer(settings.metrics_bind, metrics_server.instance_renderer([depth]))
            except OSError as exc:  # the API matters more than its metrics: serve on, loudly
                arbiter.log.error("metrics listener %s failed (%s); serving WITHOUT metrics",
                                  settings.metrics_bind, exc)
                return
            listener.append(server.start())
            arbiter.log.info("metrics (all workers) on http://%s/metrics", settings.metrics_bind)

    def post_fork(arbiter: Any, worker: Any) -> None:
        for server in listener:  # the worker must not hold the master's metrics socket
            server.close_inherited()

    def child_exit(arbiter: Any, worker: Any) -> None:
        metrics_server.worker_exited(worker.pid)

    def on_exit(arbiter: Any) -> None:
        for server in listener:
            server.stop()
        if made_here:
            metrics_server.remove_multiprocess_dir(samples_dir)

    log_level = logging.getLevelName(logging.getLogger("authsvc").getEffectiveLevel())

    class _App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", settings.bind)
            self.cfg.set("workers", settings.workers)
            # gthread: keep-alive connections, and argon2 (which releases the GIL) runs in threads
            # behind the hash gate, so a saturated worker sheds unknown devices at once instead
            # of leaving requests in the listen backlog (measured: benchmarks/perf.py).
            # ... as gunicorn's own classes, but on SIGTERM they first take in the connections
            # already queued on the socket (authsvc/workers.py).
            self.cfg.set("worker_class", WORKER_CLASSES[settings.worker_class])
            # Each worker's event loop reads whole requests (head and body) within the read
            # deadline before a thread serves them: slow clients cost no thread (README,
            # "Slow clients"; authsvc/workers.py).
            configure_workers(read_timeout=settings.request_read_timeout, max_body=MAX_BODY)
            if settings.worker_class == "gthread":  # (threads > 1 would turn sync into gthread)
                self.cfg.set("threads", settings.threads)
            # The access log is the app's own JSON line (authsvc.access); gunicorn's error log
            # goes through the same JSON handler.
            self.cfg.set("accesslog", None)
            self.cfg.set("logger_class", AppAccessLogger)
            self.cfg.set("logconfig_dict", logs.logging_dict(log_level))
            self.cfg.set("forwarded_allow_ips", "")  # client IPs come from AUTHSVC_TRUSTED_PROXIES only
            self.cfg.set("control_socket_disable", True)  # no writable $HOME in the image
            # Worker heartbeat files in shared memory: the image runs with a read-only root
            # filesystem and a small /tmp tmpfs.
            self.cfg.set("worker_tmp_dir", "/dev/shm" if os.path.isdir("/dev/shm") else None)
            # SIGTERM: after the drain (readiness 503, still serving: authsvc/drain.py), stop
            # accepting, answer every request already accepted, and let each worker's outbox
            # sender finish the message in flight, all within graceful_timeout (then gunicorn
            # kills what is left). Kubernetes: terminationGracePeriodSeconds >=
            # drain + graceful_timeout + 10 (README, "Faults").
            self.cfg.set("graceful_timeout", settings.graceful_timeout)
            self.cfg.set("post_worker_init", _stop_sender_on_sigterm)
            self.cfg.set("worker_exit", _close_worker)
            self.cfg.set("when_ready", when_ready)  # logs "listening on", starts the metrics listener
            self.cfg.set("post_fork", post_fork)
            self.cfg.set("child_exit", child_exit)
            self.cfg.set("on_exit", on_exit)

        def load(self) -> Any:
            app = create_app(settings)
            app.extensions["authsvc"].health.draining = drain_flag.is_set  # readiness 503 once draining
            _served.append(app.extensions["authsvc"])
            return app

    # SIGTERM: readiness 503 and serving on for drain_seconds, then the graceful stop (drain.py)
    drain_flag = drain.DrainFlag()
    drain.run(_App(), drain_flag, settings.drain_seconds)


@main.command()
@click.option("--once", is_flag=True, help="Drain what is due and exit.")
@_dev
def worker(once: bool, dev: bool) -> None:
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
            # SIGTERM: finish the message in flight, then exit (nothing is left leased).
            signal.signal(signal.SIGTERM, lambda *_: container.outbox.request_stop())
            container.audit_log.start(container.settings.audit_checkpoint_interval)
            container.outbox.run_forever(idle_seconds=2.0)
    finally:
        container.close()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@_dev
def db_upgrade(dev: bool) -> None:
    """Apply pending migrations (safe to run from several instances at once)."""
    settings = _settings(dev, database_only=True)
    # a session-level advisory lock: on the direct URL when a transaction pooler is in front
    applied = migrate.upgrade(_url(settings.migration_url), settings.migrations_dir)
    click.echo("\n".join(f"applied {n}" for n in applied) if applied else "database is current")
    _backfill_email_skeletons(_url(settings.migration_url))


def _backfill_email_skeletons(url: str) -> None:
    """Data step after the SQL migrations: email skeletons of accounts made before 0026."""
    from .services import email_skeletons
    from .store import Store

    store = Store(url, max_size=2)
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
@_dev
def db_status(dev: bool) -> None:
    """Show applied and pending migrations; exit 1 when not current."""
    settings = _settings(dev, database_only=True)
    st = migrate.status(_url(settings.database_url), settings.migrations_dir)
    click.echo(f"applied: {len(st.applied)}")
    for name in st.pending:
        click.echo(f"pending: {name}")
    for name in st.modified:
        click.echo(f"MODIFIED after being applied: {name}")
    if not st.current:
        sys.exit(1)


def _safe(value: object) -> str:
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


def _container(dev: bool) -> Container:
    from .app import build_container

    return build_container(_settings(dev))


def _check_reason(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .services.audit import check_reason

    if value is None:
        return None
    try:
        return check_reason(value)
    except errors.InvalidRequest as exc:
        raise click.BadParameter(exc.detail) from None


_reason = click.option("--reason", required=True, callback=_check_reason,
                       help="Why: written to the audit log (at least 5 characters with a letter, "
                            "e.g. a ticket and a few words).")


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
    """List clients: id, name, created, active or revoked."""
    c = _container(dev)
    try:
        rows = c.clients.list()
    finally:
        c.close()
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        click.echo(f"{r['id']}\t{_safe(r['name'])}\t{r['created_at']:%Y-%m-%d %H:%M}\t{state}")


@clients.command("revoke")
@click.argument("client_id")
@_reason
@_dev
def clients_revoke(client_id: str, reason: str, dev: bool) -> None:
    """Revoke a client: its secret stops working at once."""
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
                   "(max-age 300 s) so verifiers know it before they see its tokens. At least 3 s in "
                   "any case, so every replica publishes it before any signs with it.")
@_reason
@_dev
def keys_rotate(activate_in: int, reason: str, dev: bool) -> None:
    """Publish a new signing key; the old one stays published until its tokens expired."""
    c = _container(dev)
    try:
        kid = c.keys.rotate(activate_in, actor=f"operator:{operator_name()}", reason=reason)
        row = next(r for r in c.keys.list() if r["kid"] == kid)
    finally:
        c.close()
    lead = round((row["activate_at"] - row["created_at"]).total_seconds())
    click.echo(f"new signing key {kid} (signs in {lead}s)")


@keys.command("withdraw")
@click.argument("kid")
@_reason
@_dev
def keys_withdraw(kid: str, reason: str, dev: bool) -> None:
    """Unpublish a signing key now (compromised): its tokens stop verifying on every replica."""
    c = _container(dev)
    try:
        try:
            done = c.keys.withdraw(kid, actor=f"operator:{operator_name()}", reason=reason)
        except errors.Conflict as exc:
            raise click.ClickException(exc.detail) from None
    finally:
        c.close()
    if not done:
        raise click.ClickException(f"no published key {kid!r} (see `authsvc keys list`)")
    click.echo(f"key {kid} withdrawn: its tokens no longer verify")


@keys.command("list")
@_dev
def keys_list(dev: bool) -> None:
    """Every stored key: which one signs, which are published (JWKS) and until when."""
    c = _container(dev)
    try:
        rows = c.keys.list()
    finally:
        c.close()
    click.echo("kid\tstate\tcreated\tsigns from\tpublished until")
    for r in rows:
        until = f"{r['publish_until']:%Y-%m-%dT%H:%M:%SZ}" if r["publish_until"] else "-"
        click.echo(f"{r['kid']}\t{r['state']}\t{r['created_at']:%Y-%m-%dT%H:%M:%SZ}\t"
                   f"{r['activate_at']:%Y-%m-%dT%H:%M:%SZ}\t{until}")


@keys.command("usage")
@_dev
def keys_usage(dev: bool) -> None:
    """How many stored ciphertexts still depend on each encryption key id."""
    c = _container(dev)
    try:
        usage = c.reencryption.usage()
        configured = [kid for kid, _ in c.settings.encryption_keys]
    finally:
        c.close()
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
@_reason
@_dev
def keys_reencrypt(batch_size: int, reason: str, dev: bool) -> None:
    """Re-encrypt every stored secret under the newest encryption key (the first in
    AUTHSVC_ENCRYPTION_KEY), in batches; resumable, audited. Then `keys usage` shows the old
    key unused and it can be removed."""
    c = _container(dev)
    try:
        report = c.reencryption.reencrypt(operator=operator_name(), reason=reason, batch_size=batch_size)
        remaining = {kid: n for kid, n in c.reencryption.usage().items() if kid != report.kid}
    finally:
        c.close()
    for what, n in report.done.items():
        failed = report.failed.get(what, 0)
        click.echo(f"{what}: {n} re-encrypted under {report.kid}" + (f", {failed} UNDECRYPTABLE" if failed else ""))
    if remaining:
        left = "; ".join(f"{kid}: {sum(rows.values())}" for kid, rows in sorted(remaining.items()))
        click.echo(f"still under older keys: {left} (rerun to continue)")
    if any(report.failed.values()):
        sys.exit(1)


@main.group()
def accounts() -> None:
    """Incident response on one account (by account id or email)."""


@accounts.command("show")
@click.argument("account")
@_dev
def accounts_show(account: str, dev: bool) -> None:
    """Status, factors and live sessions of one account."""
    c = _container(dev)
    try:
        info = c.admin.show(account)
    except errors.NotFound as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        c.close()
    for key, value in info.items():
        click.echo(f"{key}: {_safe(value)}")


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


@accounts.command("unfreeze")
@click.argument("account")
@click.option("--keep-password", is_flag=True,
              help="Do not require a password reset before the next sign-in (audited). Only when the "
                   "freeze was a false alarm: after a takeover the attacker knows the password.")
@_reason
@_dev
def accounts_unfreeze(account: str, keep_password: bool, reason: str, dev: bool) -> None:
    """Make a frozen account active again; the way back in is a password reset (SMS code to the
    verified phone and a second factor)."""
    c = _container(dev)
    try:
        account_id = c.admin.unfreeze(account, operator=operator_name(), reason=reason, keep_password=keep_password)
    except (errors.NotFound, errors.Conflict) as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        c.close()
    after = ("the password is kept" if keep_password
             else "a password reset (SMS code + second factor) is required before the next sign-in")
    click.echo(f"unfreeze: {account_id} ({after})")


_account_command("revoke-sessions", "revoke_sessions", "Revoke every session of the account.")
_account_command("require-password-change", "require_password_change",
                 "Force a new password at the next login; revokes every session.")
_account_command("reset-factors", "reset_factors",
                 "Remove every second factor and recovery code; the next login enrolls anew via SMS "
                 "(password sign-in is turned back on if it was off).")


@main.group()
def incident() -> None:
    """Fleet-wide incident response."""


@incident.command("require-password-change")
@click.option("--all", "all_accounts", is_flag=True, required=True,
              help="Every account that exists when the run begins (required: this is fleet-wide).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000),
              help="Accounts per transaction.")
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
    """The audit log (keyed hash chain, append-only, signed checkpoints)."""


@audit.command("tail")
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="How many rows.")
@_dev
def audit_tail(limit: int, dev: bool) -> None:
    """The newest audit rows: id, time, actor, action, account, detail."""
    c = _container(dev)
    try:
        rows = c.audit_log.tail(limit)
    finally:
        c.close()
    for r in rows:
        account = r["account_id"] or "-"
        click.echo(f"{r['id']}\t{r['at']:%Y-%m-%dT%H:%M:%SZ}\t{_safe(r['actor'])}\t{_safe(r['action'])}\t"
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
@_dev
def audit_verify(checkpoints: tuple[str, ...], dev: bool) -> None:
    """Seal what is committed, recompute the keyed chains and check the checkpoints; exit 1 at
    the first row or seal that was changed, added or removed, when rows were cut off the end, or
    when a row is still not sealed a minute after it was written."""
    external = [_checkpoint(v) for v in checkpoints]
    c = _container(dev)
    try:
        result = c.audit_log.verify(external=external)
    finally:
        c.close()
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
@_dev
def audit_checkpoint(dev: bool) -> None:
    """Sign and publish the chain head now (log, audit.checkpoint webhook, audit_checkpoints)."""
    c = _container(dev)
    try:
        cp = c.audit_log.checkpoint()  # the running service (or `authsvc worker`) sends the webhook
    finally:
        c.close()
    if cp is None:
        click.echo("nothing new since the last checkpoint")
        return
    click.echo(f"checkpoint #{cp.id}: {cp.last_id}:{cp.head.hex()}")


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
        problems = c.outbox.recent_errors()
    finally:
        c.close()
    click.echo(f"pending: {depth['pending']}\nfailed: {depth['failed']}")
    if problems:
        click.echo("last errors (newest first):")
    for r in problems:
        state = f"failed {r['failed_at']:%Y-%m-%dT%H:%M:%SZ}" if r["failed_at"] else \
            f"next try {r['available_at']:%Y-%m-%dT%H:%M:%SZ}"
        click.echo(f"  #{r['id']}\t{_safe(r['kind'])}\tattempts {r['attempts']}\t{state}\t{_safe(r['last_error'])}")


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


@main.group()
def throttles() -> None:
    """Failure budgets against the list attack: who waits now, and lifting a wait."""


@throttles.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="At most this many waits and this many locks.")
@_dev
def throttles_list(limit: int, dev: bool) -> None:
    """Current waits: clients, networks, emails (masked) and known devices past their failure
    budget, accounts whose second-factor lock holds unknown devices, and the attack state."""
    c = _container(dev)
    try:
        if not c.settings.redis_url:
            click.echo("note: no AUTHSVC_REDIS_URL; each server process keeps its own counters, not shown here")
        waits = c.throttle.current()[:limit]
        locks = c.admin.locked(limit=limit)
        attack = c.throttle.attack_state()
    finally:
        c.close()
    for w in waits:
        click.echo(f"{_safe(w['scope']):<8} {_safe(w['key']):<48} {_safe(w['label']):<40} level {w['level']:<3} "
                   f"{w['seconds_left']}s left")
    for lock in locks:
        click.echo(f"{'account':<8} {'account:' + lock['account_id']:<48} {_safe(lock['email']):<40} "
                   f"level {lock['lock_count']:<3} {lock['seconds_left']}s left (second-factor lock)")
    if not waits and not locks:
        click.echo("no throttles")
    click.echo(f"attack: {'ACTIVE' if attack['active'] else 'none'} ({attack['this_minute']} failed or refused "
               f"logins this minute, {attack['last_minute']} last minute; level {attack['level']})")


@throttles.command("lift")
@click.argument("subject")
@_reason
@_dev
def throttles_lift(subject: str, reason: str, dev: bool) -> None:
    """Lift a wait: client:IP, network:IP-or-CIDR, email:ADDRESS-or-digest, device:TOKEN_ID, or
    account:ACCOUNT (an account's second-factor lock). Audited with the reason."""
    c = _container(dev)
    try:
        if subject.startswith("account:"):
            account_id = c.admin.lift_lock(subject.removeprefix("account:"), operator=operator_name(), reason=reason)
            click.echo(f"lifted the second-factor lock of account {account_id}")
            return
        found, waiting = c.throttle.operator_lift(subject, operator=operator_name(), reason=reason)
    except (errors.NotFound, errors.InvalidRequest) as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        c.close()
    click.echo(f"lifted {found.scope} {found.label}" + ("" if waiting else " (it was not waiting)"))


if __name__ == "__main__":  # pragma: no cover
    main()
