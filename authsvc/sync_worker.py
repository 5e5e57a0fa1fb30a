"""gunicorn's sync worker for authsvc, with the gthread worker's rules (:mod:`authsvc.workers`):
whole requests only (read within the deadline before the app sees them), and nothing accepted is
lost on SIGTERM."""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from gunicorn.workers.sync import SyncWorker

from .http_framing import Refused, RequestFramer, log_refusal, problem_response
from .workers import DRAIN_SECONDS, MAX_HEAD, RECV_SIZE, _options, _set_socket_timeouts


class _Prefetched:
    """A client socket whose first reads return the request already read from it."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self._sock = sock
        self._data = data

    def recv(self, size: int, *flags: int) -> bytes:
        if self._data:
            out, self._data = self._data[:size], self._data[size:]
            return out
        return self._sock.recv(size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class DrainingSyncWorker(SyncWorker):
    """sync: reads each whole request within the read deadline before serving it (the same
    rules as the gthread worker, but one connection at a time: a slow client still holds the
    worker until its deadline, so this class belongs behind a buffering proxy); after the loop
    ends on SIGTERM, answers the queued connections one by one."""

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        read_timeout = _options["read_timeout"]
        _set_socket_timeouts(client, read_timeout)
        started = time.monotonic()
        framer = RequestFramer(max_head=MAX_HEAD, max_body=int(_options["max_body"]))
        continue_sent = False
        try:
            while True:
                remaining = started + read_timeout - time.monotonic()
                if remaining <= 0:
                    if framer.received:
                        raise Refused(408, f"the request was not received within {read_timeout:g} seconds")
                    client.close()
                    return
                readable, _, _ = select.select([client], [], [], remaining)
                if not readable:
                    continue
                data = client.recv(RECV_SIZE)
                if not data:
                    client.close()
                    return
                if framer.feed(data):
                    break
                if framer.expects_continue and framer.head_complete and not continue_sent:
                    continue_sent = True
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        except Refused as exc:
            log_refusal(framer, exc.status, exc.detail, addr, started, self.wsgi)
            try:
                client.sendall(problem_response(exc.status, exc.detail))
            except OSError:
                pass
            client.close()
            return
        except OSError:
            client.close()
            return
        super().handle(listener, _Prefetched(client, bytes(framer.buffer)), addr)

    def run(self) -> None:
        super().run()
        deadline = time.monotonic() + DRAIN_SECONDS
        for listener in self.sockets:
            listener.setblocking(False)
            while time.monotonic() < deadline:
                try:
                    self.accept(listener)
                except OSError:  # EAGAIN: nothing left waiting (or the socket is gone)
                    break
                self.notify()
