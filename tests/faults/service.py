"""The service as production runs it (``authsvc serve``: gunicorn, 2 workers) in a child
process, against a given database and the local fakes, for the fault tests."""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(database_url: str, twilio, smtp, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env.update(
        AUTHSVC_DATABASE_URL=database_url,
        AUTHSVC_ENCRYPTION_KEY="f1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        AUTHSVC_SMS_PROVIDER="twilio",
        AUTHSVC_TWILIO_ACCOUNT_SID=twilio.account_sid,
        AUTHSVC_TWILIO_AUTH_TOKEN=twilio.auth_token,
        AUTHSVC_TWILIO_FROM="+15005550006",
        AUTHSVC_TWILIO_API_BASE=twilio.base_url,
        AUTHSVC_SMTP_URL=smtp.url,
        AUTHSVC_EMAIL_FROM="authsvc <no-reply@auth.test>",
        AUTHSVC_PUBLIC_URL="https://auth.test",
        AUTHSVC_SMS_COUNTRIES="JP,US",
        AUTHSVC_MIGRATIONS_DIR=str(ROOT / "migrations"),
        # 2 workers without Redis: per-process rate limits are fine for these tests (serve
        # refuses to start that way unless told so).
        AUTHSVC_RATE_LIMITS_PER_PROCESS="true",
        # SIGTERM stops at once here (no load balancer to leave); the fleet tests drain
        AUTHSVC_DRAIN_SECONDS="0",
    )
    env.update(extra)
    return env


class Service:
    def __init__(self, env: dict[str, str], *, workers: int = 2) -> None:
        self.port = free_port()
        self.env = {**env, "AUTHSVC_BIND": f"127.0.0.1:{self.port}", "AUTHSVC_WORKERS": str(workers)}
        self._log = tempfile.NamedTemporaryFile(prefix="authsvc-faults-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    def start(self, *, probe: str = "/readyz", timeout: float = 60) -> Service:
        """Start ``authsvc serve`` and wait until ``probe`` answers 200."""
        return self.launch().wait_ready(probe=probe, timeout=timeout)

    def launch(self) -> Service:
        """Start ``authsvc serve`` without waiting (several replicas start at once)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authsvc.cli", "serve"], env=self.env, cwd=ROOT,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        return self

    def wait_ready(self, *, probe: str = "/readyz", timeout: float = 60) -> Service:
        """Wait until ``probe`` answers 200 (the process must have been launched)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"authsvc exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.request("GET", probe, timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"authsvc: {probe} not 200 within {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def client(self, **kw):
        """An HTTP client of this replica with the Flask test client's shape."""
        from tests.support.http import HttpClient

        return HttpClient("127.0.0.1", self.port, **kw)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, bytes, float]:
        """(status, body, seconds) of one request on a fresh connection."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, time.perf_counter() - started
        finally:
            conn.close()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-20000:]

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
