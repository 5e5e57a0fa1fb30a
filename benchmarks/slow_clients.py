"""Benchmark: honest requests while slow clients trickle (issue 21, item 3).

    python benchmarks/slow_clients.py [--slow 200] [--seconds 20] [--rate 20] [--read-timeout 10]
                                      [--root DIR]

- the service: ``authsvc serve`` as production runs it (gunicorn, 2 workers x 8 threads,
  AUTHSVC_REQUEST_READ_TIMEOUT=--read-timeout) on a free 127.0.0.1 port, against a scratch
  database (AUTHSVC_DATABASE_URL's server, else an embedded one) and the local fakes; ``--root``
  runs the service code of another checkout (e.g. a worktree of an older commit) for a
  before/after comparison;
- honest clients: ``--rate`` requests per second in total, each on a new connection with a 10 s
  timeout, alternating ``GET /readyz`` (a database round trip) and ``POST /v1/login`` with a
  body the app reads and refuses (400);
- slow clients: ``--slow`` connections kept open all the time, each sending a login request's
  head at once and its 500-byte body one byte per second (half of them trickle the head too);
  one cut off by the server is replaced at once by a new one;
- two phases of ``--seconds`` each: without, then with the slow clients.

Prints, per phase: honest requests sent, answered (count, %), p50/p99 latency of the answered
ones and their statuses; for the slow phase, slow connections opened and cut off by the
server (408 or closed) with the median and longest time to the cut; and the load average (the
machine is shared). Asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, scratch_database  # noqa: E402

from tests.support.fake_twilio import FakeTwilio  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402

BODY = b'{"email": "' + b"a" * 470 + b'@example.com", "password": "x"}'
HONEST_LOGIN = (b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: 14\r\n\r\n{\"email\": \"x\"}")
HONEST_PROBE = b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
SLOW_REQUEST = (b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(root: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix="authsvc-slow-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "authsvc.cli", "--log-level", "WARNING", "serve"],
                            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"authsvc exited: {Path(log.name).read_text()[-3000:]}")
        try:
            if honest_request(port, HONEST_PROBE, 2)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("authsvc did not become ready")


def honest_request(port: int, raw: bytes, timeout: float) -> tuple[int | None, float]:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(raw)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None, time.perf_counter() - started
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, time.perf_counter() - started


class Honest:
    """``rate`` requests per second from a pool of threads, each request on its own connection."""

    def __init__(self, port: int, rate: float, seconds: float) -> None:
        self.results: list[tuple[int | None, float]] = []
        self._lock = threading.Lock()
        self._port = port
        n = int(rate * seconds)
        start = time.monotonic()
        self._slots = [start + i / rate for i in range(n)]
        self._next = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(min(64, max(4, int(rate))))]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._next >= len(self._slots):
                    return
                i = self._next
                self._next += 1
            delay = self._slots[i] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            result = honest_request(self._port, HONEST_PROBE if i % 2 else HONEST_LOGIN, 10)
            with self._lock:
                self.results.append(result)

    def join(self) -> None:
        for t in self._threads:
            t.join()


class Slow:
    """``n`` slow connections, each replaced as soon as the server cuts it off."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.n = n
        self.opened = 0
        self.cut: list[float] = []  # seconds from connect to the server's cut
        self.cut_how: Counter[str] = Counter()
        self.finished = 0  # sent the whole request (never happens at one byte a second)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Slow:
        self._thread.start()
        return self

    def _open(self, sel: selectors.BaseSelector, i: int) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setblocking(False)
        raw = SLOW_REQUEST
        if i % 2 == 0:  # head at once, body one byte a second
            head_end = raw.index(b"\r\n\r\n") + 4
            s.send(raw[:head_end])
            raw = raw[head_end:]
        self.opened += 1
        sel.register(s, selectors.EVENT_READ, {"i": i, "raw": raw, "sent": 0, "at": time.monotonic(), "got": b""})

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for i in range(self.n):
            self._open(sel, i)
        next_tick = time.monotonic() + 1
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=max(0.0, min(0.2, next_tick - time.monotonic()))):
                state = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    state["got"] += data
                    continue
                self._cut(sel, key.fileobj, state)
            if time.monotonic() >= next_tick:
                next_tick += 1
                for key in list(sel.get_map().values()):
                    state = key.data
                    if state["sent"] >= len(state["raw"]):
                        continue
                    try:
                        key.fileobj.send(state["raw"][state["sent"]:state["sent"] + 1])
                        state["sent"] += 1
                        if state["sent"] == len(state["raw"]):
                            self.finished += 1
                    except OSError:
                        self._cut(sel, key.fileobj, state)
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()

    def _cut(self, sel: selectors.BaseSelector, sock: socket.socket, state: dict) -> None:
        sel.unregister(sock)
        sock.close()
        self.cut.append(time.monotonic() - state["at"])
        got = state["got"]
        self.cut_how[got.split(b"\r\n", 1)[0].decode(errors="replace")[:30] if got else "closed"] += 1
        if not self._stop.is_set():
            self._open(sel, state["i"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def report(name: str, results: list[tuple[int | None, float]]) -> None:
    answered = [(s, t) for s, t in results if s is not None]
    times = sorted(t * 1000 for _, t in answered)
    p50 = statistics.median(times) if times else float("nan")
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
    pct = 100 * len(answered) / len(results) if results else 0
    statuses = dict(sorted(Counter(s for s, _ in results).items(), key=lambda kv: str(kv[0])))
    print(f"{name:<28} sent {len(results):>5}  answered {len(answered):>5} ({pct:5.1f}%)  "
          f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  statuses {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--read-timeout", type=int, default=10)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose authsvc/ the service runs")
    args = parser.parse_args()

    with scratch_database() as url, FakeTwilio() as twilio, SmtpSink() as smtp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        env.update(
            AUTHSVC_DATABASE_URL=url, AUTHSVC_BIND=f"127.0.0.1:{port}", AUTHSVC_WORKERS="2",
            AUTHSVC_ENCRYPTION_KEY="b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            AUTHSVC_SMS_PROVIDER="twilio", AUTHSVC_TWILIO_ACCOUNT_SID=twilio.account_sid,
            AUTHSVC_TWILIO_AUTH_TOKEN=twilio.auth_token, AUTHSVC_TWILIO_FROM="+15005550006",
            AUTHSVC_TWILIO_API_BASE=twilio.base_url, AUTHSVC_SMTP_URL=smtp.url,
            AUTHSVC_PUBLIC_URL="https://auth.test", AUTHSVC_SMS_COUNTRIES="JP,US",
            AUTHSVC_MIGRATIONS_DIR=str(ROOT / "migrations"), AUTHSVC_RATE_LIMITS_PER_PROCESS="true",
            AUTHSVC_METRICS_BIND="off", AUTHSVC_REQUEST_READ_TIMEOUT=str(args.read_timeout),
            PYTHONPATH=str(args.root.resolve()),
        )
        proc = start_service(args.root.resolve(), env, port)
        try:
            print(f"service: {args.root.resolve()} (git {git_head(args.root)}), 2 workers x 8 threads, "
                  f"read deadline {args.read_timeout} s; honest {args.rate:g}/s for {args.seconds:g} s per phase")
            honest = Honest(port, args.rate, args.seconds)
            honest.join()
            report("no slow clients", honest.results)

            slow = Slow(port, args.slow).start()
            time.sleep(1.5)  # every slow connection is open and has begun
            honest = Honest(port, args.rate, args.seconds)
            honest.join()
            slow.stop()
            report(f"{args.slow} slow connections", honest.results)
            cut = sorted(slow.cut)
            print(f"{'':<28} slow connections opened {slow.opened}, cut off by the server {len(cut)} "
                  f"({dict(slow.cut_how)}), after median {statistics.median(cut) if cut else float('nan'):.1f} s, "
                  f"longest {max(cut, default=float('nan')):.1f} s; finished sending: {slow.finished}")
            print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def git_head(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
