"""Slow clients and malformed framing, against the service as production runs it (gunicorn,
2 workers x 8 threads).

Issue 21: 20 connections sending a body one byte per second left 0-60% of honest requests
answered, 32 left none (each held a worker thread for as long as it kept sending). Now each
worker's event loop reads whole requests before a thread serves them, within
AUTHSVC_REQUEST_READ_TIMEOUT: slow connections cost no thread and are cut off (408, or closed
when they sent nothing) at their deadline. A malformed chunk size (``0x40``, ``+40``) was a
500 with a traceback; now it is 400 before the application sees it.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

import pytest

from tests.faults.service import Service, service_env

READ_TIMEOUT = 2  # AUTHSVC_REQUEST_READ_TIMEOUT of these services
SLOW = 120  # slow connections (more than the 16 threads of 2 workers x 8, by far)
TRICKLE_SECONDS = 3 * READ_TIMEOUT + 2  # how long a slow client would go on sending


@pytest.fixture(scope="module")
def service(pg, twilio_server, smtp_server):
    svc = Service(service_env(pg.url, twilio_server, smtp_server,
                              AUTHSVC_REQUEST_READ_TIMEOUT=str(READ_TIMEOUT))).start()
    try:
        yield svc
    finally:
        svc.close()


def _read_response(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def _exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send ``raw`` (asking to close) and return everything the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return _read_response(s)


def _read_one(s: socket.socket) -> bytes:
    """One response (with a Content-Length) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _status(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])


def _login_json(body: bytes, *, chunked_sizes: list[bytes] | None = None) -> bytes:
    head = b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
    if chunked_sizes is None:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    out = head + b"Transfer-Encoding: chunked\r\n\r\n"
    rest = body
    for size in chunked_sizes:
        n = int(size.split(b";")[0], 16)
        out += size + b"\r\n" + rest[:n] + b"\r\n"
        rest = rest[n:]
    return out + b"0\r\n\r\n"


class SlowClients:
    """``n`` connections, each sending a request one byte every half second: half trickle their
    head, half send the head at once and trickle a body of 500 bytes. Records, per connection,
    when the server cut it off and what it answered."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.payloads: list[bytes] = []
        body = b'{"email": "' + b"a" * 470 + b'", "password": "x"}'
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            raw = _login_json(body).replace(b"Connection: close", b"Connection: keep-alive")
            if i % 2 == 0:
                head_end = raw.index(b"\r\n\r\n") + 4
                s.sendall(raw[:head_end])  # non-blocking, but a few hundred bytes always fit
                raw = raw[head_end:]
            self.sockets.append(s)
            self.payloads.append(raw)
        self.started = time.monotonic()
        self.cut_after: dict[int, float] = {}
        self.answers: dict[int, bytes] = {}
        self.sent = [0] * n
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for i, s in enumerate(self.sockets):
            sel.register(s, selectors.EVENT_READ, i)
        next_send = time.monotonic()
        while len(self.cut_after) < len(self.sockets) and time.monotonic() - self.started < TRICKLE_SECONDS:
            now = time.monotonic()
            if now >= next_send:
                for i, s in enumerate(self.sockets):
                    if i in self.cut_after or self.sent[i] >= len(self.payloads[i]):
                        continue
                    try:
                        s.send(self.payloads[i][self.sent[i]:self.sent[i] + 1])
                        self.sent[i] += 1
                    except OSError:
                        self._cut(i, sel, b"")
                next_send += 0.5
            for key, _ in sel.select(timeout=max(0.0, min(0.1, next_send - time.monotonic()))):
                i = key.data
                try:
                    data = self.sockets[i].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answers[i] = self.answers.get(i, b"") + data
                    continue
                self._cut(i, sel, b"")
        sel.close()

    def _cut(self, i: int, sel: selectors.BaseSelector, data: bytes) -> None:
        if i in self.cut_after:
            return
        self.cut_after[i] = time.monotonic() - self.started
        sel.unregister(self.sockets[i])

    def join(self) -> None:
        self._thread.join(TRICKLE_SECONDS + 5)
        for s in self.sockets:
            s.close()


def test_slow_clients_cost_no_thread_and_are_cut_off_at_the_deadline(service):
    slow = SlowClients(service.port, SLOW)
    try:
        time.sleep(0.5)  # every slow connection has begun its request
        honest: list[int | None] = []
        raw_get = b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        bad_login = _login_json(b'{"email": "someone@example.com"}')  # read, validated, refused
        while time.monotonic() - slow.started < READ_TIMEOUT + 1:
            honest.append(_status(_exchange(service.port, raw_get, timeout=5)))
            honest.append(_status(_exchange(service.port, bad_login, timeout=5)))
    finally:
        slow.join()
    log = service.log()
    print(f"\nhonest requests while {SLOW} slow connections trickled: {len(honest)}, statuses {set(honest)}; "
          f"slow connections cut off: {len(slow.cut_after)}/{SLOW}, after "
          f"{min(slow.cut_after.values(), default=0):.1f}-{max(slow.cut_after.values(), default=0):.1f}s")

    # Every honest request was answered, while every worker thread could have been held.
    assert honest and all(status in (200, 400) for status in honest), honest
    assert honest.count(200) == honest.count(400)
    # Every slow connection was cut off by the server, none before its deadline and long
    # before it would have finished sending (TRICKLE_SECONDS).
    assert len(slow.cut_after) == SLOW, f"{SLOW - len(slow.cut_after)} slow connections still open\n{log[-3000:]}"
    assert min(slow.cut_after.values()) >= READ_TIMEOUT - 0.5
    assert all(sent < len(p) for sent, p in zip(slow.sent, slow.payloads, strict=True))
    # Those that sent something and read the answer got 408 (a reset may hide it: the
    # client's unread bytes), never anything the application answered.
    statuses = {_status(answer) for answer in slow.answers.values()}
    assert statuses <= {408}, statuses
    assert "Traceback" not in log


def test_the_service_still_reads_requests_sent_in_pieces_and_pipelined(service):
    body = json.dumps({"email": "someone@example.com", "password": "not the password"}).encode()
    # Content-Length body in small pieces, a chunked body with an extension, both pipelined on
    # one kept-alive connection with a GET after them.
    first = _login_json(body).replace(b"Connection: close", b"Connection: keep-alive")
    second = _login_json(body, chunked_sizes=[b"10;name=value", b"%x" % (len(body) - 16)]).replace(
        b"Connection: close", b"Connection: keep-alive")
    third = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    raw = first + second + third
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        for i in range(0, len(raw), 37):
            s.sendall(raw[i:i + 37])
            time.sleep(0.005)
        answer = _read_response(s)
    statuses = [int(part.split(b" ", 1)[0]) for part in answer.split(b"HTTP/1.1 ")[1:]]
    # The two logins reach the app (unknown email: 401 invalid_credentials), then the probe.
    assert statuses == [401, 401, 200], answer[:2000]


def test_a_client_expecting_100_continue_gets_it_before_sending_its_body(service):
    body = b'{"email": "someone@example.com", "password": "not the password"}'
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        s.sendall(body)
        answer = _read_response(s)
    final = [part for part in (interim + answer).split(b"HTTP/1.1 ")[1:] if not part.startswith(b"100 ")]
    assert len(final) == 1 and final[0].startswith(b"401 "), answer


@pytest.mark.parametrize("size_line", [b"0x40", b"+40", b"-40", b" 40", b"4 0", b"40 ", b"", b"g",
                                       b"40;", b"40;=x", b"1" * 40])
def test_a_malformed_chunk_size_is_400_not_500(service, size_line):
    head = (b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    body = b'{"email": "someone@example.com", "password": "not the password"}'
    answer = _exchange(service.port, head + size_line + b"\r\n" + body + b"\r\n0\r\n\r\n")
    assert _status(answer) == 400, answer
    assert b'"code": "invalid_request"' in answer
    assert "Traceback" not in service.log()


def test_bodies_over_64_kib_are_413_whether_announced_or_chunked(service):
    head = b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
    # announced: refused from the head, without waiting for a body that never comes
    answer = _exchange(service.port, head + b"Content-Length: 65537\r\n\r\n")
    assert _status(answer) == 413, answer
    chunk = b"a" * 32768
    answer = _exchange(service.port, head + b"Transfer-Encoding: chunked\r\n\r\n"
                       + (b"8000\r\n" + chunk + b"\r\n") * 3 + b"0\r\n\r\n")
    assert _status(answer) == 413, answer
    assert b'"code": "payload_too_large"' in answer
    # a trailer section is refused, not handed to the app
    answer = _exchange(service.port, head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n")
    assert _status(answer) == 400, answer


def test_a_kept_alive_connection_gets_the_deadline_from_its_next_request(service):
    """Idle keep-alive is gunicorn's keepalive timeout; once the next request begins, its own
    read deadline runs, and a half-sent request is answered 408."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=READ_TIMEOUT + 5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _status(_read_one(s)) == 200
        started = time.monotonic()
        s.sendall(b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{")
        answer = _read_response(s)
        waited = time.monotonic() - started
    assert _status(answer) == 408, answer
    assert b'"code": "request_timeout"' in answer
    assert waited >= READ_TIMEOUT - 0.5
    # the access log has the refusal, with the peer and why
    lines = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line.get("logger") == "authsvc.access" and line.get("status") == 408]
    assert any(line.get("unread") == "timeout" and line.get("client") == "127.0.0.1"
               and line.get("path") == "/v1/login" for line in refused), refused[-3:]


def test_the_sync_worker_class_reads_requests_the_same_way(pg, twilio_server, smtp_server):
    """AUTHSVC_WORKER_CLASS=sync: the same deadline and framing rules (one connection at a
    time, so it belongs behind a buffering proxy: README)."""
    svc = Service(service_env(pg.url, twilio_server, smtp_server, AUTHSVC_WORKER_CLASS="sync",
                              AUTHSVC_REQUEST_READ_TIMEOUT=str(READ_TIMEOUT))).start()
    try:
        body = b'{"email": "someone@example.com", "password": "not the password"}'
        assert _status(_exchange(svc.port, _login_json(body, chunked_sizes=[b"8", b"%x" % (len(body) - 8)]))) == 401
        bad = _login_json(body, chunked_sizes=[b"%x" % len(body)]).replace(b"\r\n%x\r\n" % len(body), b"\r\n0x40\r\n")
        answer = _exchange(svc.port, bad)
        assert _status(answer) == 400, answer
        started = time.monotonic()
        answer = _exchange(svc.port, b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{")
        assert _status(answer) == 408, answer
        assert time.monotonic() - started >= READ_TIMEOUT - 0.5
        log = svc.log()
    finally:
        svc.close()
    assert "Traceback" not in log
