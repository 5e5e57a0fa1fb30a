"""gunicorn workers for authsvc: whole requests only, and nothing accepted is lost.

**Whole requests.** gunicorn's gthread worker hands a connection to a thread as soon as its
first byte arrives; the thread then blocks reading the rest of the head and the body, so a
client sending one byte a second holds a thread for as long as it likes (issue 21: 20 such
connections left 0-60% of honest requests answered, 32 left none). Here the worker's event loop
reads every request, head and body, without blocking, and only a complete request reaches the
thread pool, whose threads then never wait for a client. A request that is not complete within
``AUTHSVC_REQUEST_READ_TIMEOUT`` seconds of its connection being accepted (or, on a kept-alive
connection, of its first byte) is answered 408 and closed (a connection that sent nothing is
closed silently); a malformed chunked body is answered 400 and a body announced or chunked
over 64 KiB 413, before the application sees anything (:mod:`authsvc.http_framing`). A slow
client thus costs a file descriptor and its buffer, never a thread; each worker holds at most
gunicorn's ``worker_connections`` (1,000) connections, then leaves the rest in the listen
backlog until deadlines free some (README, "Slow clients").

The socket a thread serves has kernel send and receive timeouts of the same length, so a
client that stops reading its response (or a request the event loop and gunicorn framed
differently, which should not happen) cannot hold the thread longer than that. Connections
are closed without blocking the event loop: the write side is shut and the socket lingers in
the loop (at most ``LINGER_SECONDS``) until the client closes its side, instead of gunicorn's
blocking drain in the loop.

**Waiting at the gate takes no thread from anyone else.** A sign-in or a registration may
wait at the hash gate for seconds (by its standing: :mod:`authsvc.services.platform.hashing`), holding
the thread that serves it. On gunicorn's one pool of ``threads`` (8), such requests filled every
thread while a known device's second-factor step or an introspection waited behind them for a
thread (measured: known-device sign-ins at p50 4.9 s with 48 attacker connections), and
the requests queued in the pool beyond them were invisible to the gate, which could therefore
neither order nor shed them. So ``POST /v1/login`` and ``POST /v1/registrations`` without an
``X-Device-Token`` (:func:`may_wait_at_gate`) are served by a pool of their own,
``gate_threads`` per worker (``AUTHSVC_GATE_THREADS``, 16); everything else, known devices'
sign-ins included, keeps the ``threads`` pool and never waits behind them. A thread waiting
at the gate sleeps on a condition of its own; but every thread doing a request's work before
the gate competes for the interpreter, so the pool stays small (measured with 512 attacker
connections: 256 gate threads left known devices' sign-ins at p50 4.6 s, 16 at 259 ms).

**Nothing accepted is lost.** On SIGTERM gunicorn's own workers stop accepting at once;
whatever arrived a moment before is lost with the listening socket. These first take in the
connections already queued on the socket (the kernel's backlog: accepted by TCP, not yet by
gunicorn) and answer them with the requests in flight. Kubernetes' preStop sleep keeps new
traffic away during the shutdown (README, "Faults").
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from collections import deque
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn import glogging
from gunicorn.workers.gthread import TConn, ThreadWorker

from .http_framing import Refused, RequestFramer, log_refusal, problem_response

DRAIN_SECONDS = 5.0  # at most this long taking in queued connections after SIGTERM
LINGER_SECONDS = 2.0  # a closed connection waits this long at most for the client's FIN
RECV_SIZE = 65536
MAX_HEAD = 32 * 1024  # request line and headers: ours are a few hundred bytes

# Set by ``configure`` in the master before the workers fork.
_options: dict[str, float] = {"read_timeout": 10.0, "max_body": 64 * 1024, "gate_threads": 16}

# Requests that may wait at the hash gate: served by the gate's own thread pool.
_GATED_LINES = (b"POST /v1/login ", b"POST /v1/login?", b"POST /v1/registrations ", b"POST /v1/registrations?")


_DEVICE_TOKEN = b"\r\nx-device-token:"


def may_wait_at_gate(data: bytes) -> bool:
    """True for a request (as received) that may wait at the hash gate as a stranger: a sign-in's
    password step or a registration without an ``X-Device-Token``. A sign-in that carries one
    is served by the other pool, so a known device never queues behind a crowd of strangers
    for a thread; a forged token only puts its request among all the others, where it waits
    its turn like any request and still stands as a stranger at the gate."""
    if not data.startswith(_GATED_LINES):
        return False
    end = data.find(b"\r\n\r\n")
    return _DEVICE_TOKEN not in data[: end if end >= 0 else len(data)].lower()


def configure(*, read_timeout: float, max_body: int, gate_threads: int = 16) -> None:
    """The read deadline (seconds), the largest body accepted (bytes) and the gate's threads, for
    every worker."""
    _options["read_timeout"] = float(read_timeout)
    _options["max_body"] = int(max_body)
    _options["gate_threads"] = int(gate_threads)


def _set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel timeouts for blocking reads and writes on ``sock`` (the thread's side)."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class DrainingThreadWorker(ThreadWorker):
    """gthread whose event loop reads whole requests before a thread serves them (above), and
    which takes in the queued connections on SIGTERM and answers them within
    ``graceful_timeout`` like the requests in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = _options["read_timeout"]
        self.max_body = int(_options["max_body"])
        self.reading: deque[TConn] = deque()  # connections reading a request, oldest deadline first
        self.lingering: deque[tuple[float, socket.socket]] = deque()
        self._idle_until: float | None = None  # set on SIGTERM: when silent connections close
        self.gate_pool: futures.ThreadPoolExecutor | None = None  # requests that may wait at the gate

    # --- taking connections in --------------------------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        _set_socket_timeouts(sock, self.read_timeout)
        conn = TConn(self.cfg, sock, addr, listener.getsockname())  # non-blocking
        self._start_reading(conn, b"", try_now=False)

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection has a new request coming: read it here, not in a thread."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn, b"", try_now=True)

    def _start_reading(self, conn: TConn, pending: bytes, *, try_now: bool) -> None:
        now = time.monotonic()
        conn.framer = RequestFramer(max_head=MAX_HEAD, max_body=self.max_body)
        conn.read_started = now
        conn.read_deadline = now + self.read_timeout
        conn.continue_sent = False
        if pending and self._feed(conn, pending):
            return
        if try_now and self._read_available(conn):
            return
        conn.registered = True
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock: Any) -> None:
        if self._read_available(conn):
            self._unregister(conn)

    def _unregister(self, conn: TConn) -> None:
        if getattr(conn, "registered", False):
            conn.registered = False
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            try:
                self.reading.remove(conn)
            except ValueError:
                pass

    def _read_available(self, conn: TConn) -> bool:
        """Read what the socket holds; True once the connection has left the reading state
        (handed to a thread, refused or closed)."""
        while True:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self._unregister(conn)
                self._close(conn)
                return True
            if not data:  # the client went away before finishing its request
                self._unregister(conn)
                self._close(conn)
                return True
            if self._feed(conn, data):
                return True
            if len(data) < RECV_SIZE:
                return False

    def _feed(self, conn: TConn, data: bytes) -> bool:
        framer: RequestFramer = conn.framer
        try:
            complete = framer.feed(data)
        except Refused as exc:
            self._unregister(conn)
            self._refuse(conn, exc.status, exc.detail)
            return True
        if not complete:
            if framer.expects_continue and not conn.continue_sent and framer.head_complete:
                conn.continue_sent = True
                try:  # the client waits for this before sending its body (RFC 9110 10.1.1)
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            return False
        self._unregister(conn)
        self._hand_over(conn, bytes(framer.buffer))
        return True

    def _hand_over(self, conn: TConn, data: bytes) -> None:
        """Give a complete request (and anything pipelined behind it) to a thread."""
        conn.framer = None
        conn.sock.setblocking(True)
        conn.init()  # the parser, on a new connection; the kept one otherwise
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        conn.may_wait = may_wait_at_gate(data)
        self.enqueue_req(conn)

    def enqueue_req(self, conn: TConn) -> None:
        """A complete request to a thread: the gate's pool or the others'."""
        if not getattr(conn, "may_wait", False):
            super().enqueue_req(conn)
            return
        if self.gate_pool is None:
            self.gate_pool = futures.ThreadPoolExecutor(int(_options["gate_threads"]), thread_name_prefix="gate")
        fs = self.gate_pool.submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    # --- deadlines and closing --------------------------------------------------------------
    def murder_pending(self) -> None:  # run by gunicorn's loop about once a second
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].read_deadline <= now:
            conn = self.reading[0]
            self._unregister(conn)
            if conn.framer.received:
                self._refuse(conn, 408, f"the request was not received within {self.read_timeout:g} seconds")
            else:  # nothing was sent: close quietly (browsers open spare connections)
                self._close(conn)
        if self._idle_until is not None and now >= self._idle_until:
            # stopping: a connection that has sent nothing yet is closed, not waited for
            for conn in [c for c in self.reading if not c.framer.received]:
                self._unregister(conn)
                self._close(conn)
        while self.lingering and self.lingering[0][0] <= now:
            self._final_close(self.lingering.popleft()[1])

    def _refuse(self, conn: TConn, status: int, detail: str) -> None:
        log_refusal(conn.framer, status, detail, conn.client, conn.read_started, self.wsgi)
        try:
            conn.sock.send(problem_response(status, detail))
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn: TConn) -> None:
        """Close without blocking the loop: shut the write side, linger for the client's FIN."""
        self.nr_conns -= 1
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._final_close(sock)
            return
        self.lingering.append((time.monotonic() + LINGER_SECONDS, sock))
        self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)

    def _on_lingering_readable(self, sock: socket.socket) -> None:
        try:
            while data := sock.recv(RECV_SIZE):
                if len(data) < RECV_SIZE:
                    return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        # EOF or error: done (the deque entry goes when its time comes)
        self._final_close(sock)

    def _final_close(self, sock: socket.socket) -> None:
        if sock.fileno() < 0:
            return
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def finish_request(self, conn: TConn, fs: Any) -> None:
        try:
            keepalive = fs.result() is True if not fs.cancelled() else False
        except Exception:  # noqa: BLE001 - gunicorn's handler closes it
            keepalive = False
        if keepalive:
            leftover = conn.parser.unreader.take_buffered()
            if leftover:  # a pipelined request: read the rest of it here too
                conn.sock.setblocking(False)
                self._start_reading(conn, leftover, try_now=True)
                return
            super().finish_request(conn, fs)
            return
        self._close(conn)

    # --- SIGTERM ----------------------------------------------------------------------------
    def _cap_keepalive(self, deadline: float) -> None:
        """Stopping: kept-alive connections close by ``deadline`` (gunicorn), and so do those
        accepted that have not sent a byte; a request already begun keeps its read deadline."""
        super()._cap_keepalive(deadline)
        self._idle_until = deadline

    def set_accept_enabled(self, enabled: bool) -> None:
        if not enabled and not self.alive:
            self._take_backlog()
        super().set_accept_enabled(enabled)

    def _take_backlog(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        for listener in self.sockets:
            listener.setblocking(False)
            while time.monotonic() < deadline:
                before = self.nr_conns
                self.accept(listener)  # reads the request, then submits it to the thread pool
                if self.nr_conns == before:  # nothing was waiting (EAGAIN)
                    break

    def handle_quit(self, sig: Any, frame: Any) -> None:
        if self.gate_pool is not None:
            self.gate_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)

    def run(self) -> None:
        try:
            super().run()
        finally:
            while self.lingering:
                self._final_close(self.lingering.popleft()[1])
            if self.gate_pool is not None:
                self.gate_pool.shutdown(wait=False)


WORKER_CLASSES: dict[str, Any] = {
    "gthread": "authsvc.workers.DrainingThreadWorker",
    "sync": "authsvc.sync_worker.DrainingSyncWorker",
}


class AppAccessLogger(glogging.Logger):
    """gunicorn's logger without its access log: the app writes its own JSON access line
    (``authsvc.access``). gunicorn otherwise builds its access-log atoms for every request
    even though its access logger is held at WARNING and drops the line (measured: ~5% of a
    worker's request CPU)."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
