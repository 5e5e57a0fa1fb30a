"""Running the service: ``serve`` (the HTTP API: gunicorn, or the Werkzeug server with
``--dev``) and ``worker`` (the outbox and the audit sealer on their own)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Any

import click

from .. import logs
from ..config import Settings
from ..store import migrate
from .common import admin_container, dev_option, settings_for, url
from .db import backfill_email_skeletons


@click.command()
@click.option("--bind", metavar="HOST:PORT",
              help="Where to listen (overrides AUTHSVC_BIND; default 0.0.0.0:8000, 127.0.0.1:8000 with --dev). "
                   "With --dev, PUBLIC_URL and ORIGINS follow it unless set.")
@dev_option
def serve(bind: str | None, dev: bool) -> None:
    """Serve the HTTP API (gunicorn; the Werkzeug server with --dev)."""
    settings = settings_for(dev, bind=bind, new_dev_data=True)
    host, port = split_bind(settings.bind)
    if not dev:
        problems = settings.serving_problems()
        if problems:
            raise click.ClickException("refusing to start: " + "; ".join(problems))
    _check_can_listen(host, port)  # before anything claims to listen (or migrates)
    if dev:
        applied = migrate.upgrade(url(settings.database_url), settings.migrations_dir)
        for name in applied:
            click.echo(f"applied migration {name}")
        backfill_email_skeletons(url(settings.database_url))
        from werkzeug.serving import make_server

        from ..app import create_app

        # SIGTERM ends the server like Ctrl+C, so the embedded PostgreSQL is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        app = create_app(settings)
        try:
            server = make_server(host, port, app, threaded=True)
        except OSError as exc:
            app.extensions["authsvc"].close()
            raise click.ClickException(f"cannot listen on {settings.bind}: {exc.strerror or exc}") from None
        if settings.metrics_bind:
            from ..metrics_server import MetricsServer

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

    from .. import drain, metrics_server
    from ..api.body import MAX_BODY
    from ..workers import WORKER_CLASSES, AppAccessLogger, configure as configure_workers

    # before the app (and prometheus_client) is loaded: every worker writes to this directory
    samples_dir, made_here = metrics_server.prepare_multiprocess_dir(
        str(settings.metrics_dir) if settings.metrics_dir else None
    )
    from ..app import create_app
    from ..metrics import OutboxDepthCollector
    from ..store import once

    listener: list[metrics_server.MetricsServer] = []

    def when_ready(arbiter: Any) -> None:  # in the master, which serves no API request
        logging.getLogger("authsvc").info("listening on %s with %s worker(s)", settings.bind, settings.workers)
        if settings.metrics_bind:
            def outbox_depth() -> dict[str, int]:
                with once(url(settings.database_url)) as tx:
                    depth = tx.outbox.depth()
                return {"pending": depth.pending, "failed": depth.failed}

            depth = OutboxDepthCollector(outbox_depth)
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
            configure_workers(read_timeout=settings.request_read_timeout, max_body=MAX_BODY,
                              gate_threads=settings.gate_threads)
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


@click.command()
@click.option("--once", is_flag=True, help="Drain what is due and exit.")
@dev_option
def worker(once: bool, dev: bool) -> None:
    """Deliver the outbox (SMS, email, webhooks) with retries."""
    with admin_container(dev) as container:
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
