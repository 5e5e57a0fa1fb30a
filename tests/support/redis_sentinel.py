"""A Redis Sentinel (``redis-server --sentinel``, Debian's redis-server) on a loopback port,
watching the test Redis under a service name of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis


class Sentinel:
    def __init__(self, master_host: str = "127.0.0.1", master_port: int = 6379) -> None:
        self.binary = shutil.which("redis-server") or shutil.which("redis-sentinel")
        self.dir = Path(tempfile.mkdtemp(prefix="authsvc-sentinel-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.service = f"authsvc-{uuid.uuid4().hex[:8]}"
        self.master = (master_host, master_port)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def start(self) -> Sentinel:
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.service} {self.master[0]} {self.master[1]} 1\n"
        )
        self.proc = subprocess.Popen([self.binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.execute_command("SENTINEL", "get-master-addr-by-name", self.service):
                    return self
            except redis.RedisError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "the Sentinel did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
