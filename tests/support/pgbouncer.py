"""Debian's PgBouncer (``pgbouncer`` package) in transaction pooling mode on a loopback port,
in front of a PostgreSQL server, for the tests that run the service through it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)


class PgBouncer:
    def __init__(self, host: str, port: int, *, pool_size: int = 4, user: str = "postgres") -> None:
        self.binary = binary()
        self.target = (host, port)
        self.pool_size = pool_size
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="authsvc-pgbouncer-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PgBouncer:
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        # every database of the server, few server connections: clients share them, as 50 pods do
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.target[0]} port={self.target[1]}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "server_reset_query =\nlog_connections = 0\nlog_disconnections = 0\n"
        )
        os.chmod(self.dir, 0o755)
        for f in self.dir.iterdir():
            os.chmod(f, 0o644)
        args = [self.binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # it refuses to run as root
            args[1:1] = ["-u", self._run_as()]
        self._log = open(self.dir / "log", "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2, prepare_threshold=None) as c:
                    c.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("pgbouncer did not start:\n" + self.log()) from None
                time.sleep(0.05)

    def _run_as(self) -> str:
        """An unprivileged user that can reach the server: ``nobody`` for TCP; for a Unix socket
        (the embedded PostgreSQL keeps it in its own data folder, closed to others) the
        folder's owner."""
        host = self.target[0]
        if host.startswith("/"):
            owner = Path(host).stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner).pw_name
        return "nobody"

    def log(self) -> str:
        return (self.dir / "log").read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
