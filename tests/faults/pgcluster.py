"""A throwaway PostgreSQL cluster that a test can stop and start, built from the binaries
that PyPI's ``pgserver`` ships (so it works on a fresh machine with only Python).

It listens on 127.0.0.1 on a free port that stays the same across restarts. ``kill()`` is
``pg_ctl stop -m immediate``: the server dies at once and every client connection breaks,
as when PostgreSQL crashes or its host goes away. As root the cluster runs as pgserver's
unprivileged system user, as pgserver itself does.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PgCluster:
    def __init__(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self._bin = POSTGRES_BIN_PATH
        self._user: str | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="authsvc-faults-pg-"))
        self.pgdata = self.dir / "pgdata"
        self.port = _free_port()
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, name: str, *args: str, timeout: float = 60) -> None:
        kwargs = {"user": self._user} if self._user else {}
        subprocess.run([str(self._bin / name), *args], check=True, capture_output=True, timeout=timeout,
                       cwd=self.dir, **kwargs)

    def init(self) -> PgCluster:
        if platform.system() != "Windows" and os.geteuid() == 0:
            import pwd

            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            self._user = "pgserver"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self._bin)
            ensure_prefix_permissions(self.dir)
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8",
                  "--no-sync")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
            )
        return self

    def standby(self, *, synchronous: bool = True) -> PgCluster:
        """A streaming standby of this (running) cluster, made with ``pg_basebackup -R`` on a
        port of its own, not started. With ``synchronous`` this cluster waits for it at every
        commit (``synchronous_standby_names``), so an acknowledged write is on both."""
        other = PgCluster()
        if self._user:
            import pwd

            from pgserver.utils import ensure_prefix_permissions

            other._user = self._user
            ensure_prefix_permissions(other.dir)
            entry = pwd.getpwnam(self._user)
            os.chown(other.dir, entry.pw_uid, entry.pw_gid)
        other._run("pg_basebackup", "-D", str(other.pgdata), "-R", "-X", "stream", "-c", "fast",
                   "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
        with (other.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {other.port}\nhot_standby = on\n")
        if synchronous:
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.write("\nsynchronous_standby_names = '*'\nsynchronous_commit = on\n")
            self._run("pg_ctl", "-D", str(self.pgdata), "reload")
        return other

    def promote(self) -> None:
        """``pg_ctl promote``: a standby becomes a primary (waits until it accepts writes)."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "30", "promote")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.dir / "log"), "-w", "-t", "30", "start")
        self.running = True

    def kill(self) -> None:
        """Stop at once (``-m immediate``): like a crash, every connection breaks."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
