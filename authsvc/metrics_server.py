"""The metrics listener (``AUTHSVC_METRICS_BIND``), apart from the public API port.

Under gunicorn it runs as a thread in the master process, which never serves API requests:
the workers write their samples to a directory this module manages (prometheus_client's
multiprocess mode; ``AUTHSVC_METRICS_DIR``, else a private temporary directory), emptied when
the service starts; a dead worker's live gauges are dropped (``child_exit``), its counters stay
in the sums as Prometheus expects. With ``--dev`` the listener is a thread of the one process.
Only ``GET /metrics`` is answered (404 otherwise).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import metrics as metrics_mod

_log = logging.getLogger(__name__)
Renderer = Callable[[], tuple[bytes, str]]


def prepare_multiprocess_dir(path: str | None) -> tuple[str, bool]:
    """Make (or empty) the samples directory and switch prometheus_client to multiprocess mode
    in this process and the workers it forks. Returns (path, whether we created it)."""
    created = path is None
    if path is None:
        path = tempfile.mkdtemp(prefix="authsvc-metrics-")
    else:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):  # samples of a previous run
            os.remove(stale)
    os.environ[metrics_mod.MULTIPROC_ENV] = path
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported already
    return path, created


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Drop the live gauges of a dead worker (gunicorn ``child_exit``)."""
    from prometheus_client import multiprocess

    path = metrics_mod.multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{bind!r} is not host:port")
    return host.strip("[]"), int(port)


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class MetricsServer:
    """A small threaded HTTP server answering ``GET /metrics`` with ``render()``."""

    def __init__(self, bind: str, render: Renderer) -> None:
        host, port = parse_bind(bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = family

        self._server = make_server(host, port, self._app(render), _Server, handler_class=_Handler)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @staticmethod
    def _app(render: Renderer):  # type: ignore[no-untyped-def]
        def app(environ, start_response):  # type: ignore[no-untyped-def]
            if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found\n"]
            try:
                body, content_type = render()
            except Exception:  # noqa: BLE001 - a scrape must never take the listener down
                _log.exception("rendering metrics failed")
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"metrics unavailable\n"]
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body] if environ["REQUEST_METHOD"] == "GET" else [b""]

        return app

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="authsvc-metrics", daemon=True)
        self._thread.start()
        return self

    def close_inherited(self) -> None:
        """In a forked child: close the copy of the listening socket (the parent serves it)."""
        self._server.socket.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def instance_renderer(collectors: Iterable[metrics_mod.Collector]) -> Renderer:
    """Render every worker's samples (multiprocess directory) plus scrape-time ``collectors``."""
    extra = list(collectors)
    return lambda: metrics_mod.render(extra)
