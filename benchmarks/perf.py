"""Benchmark (issue 9): logins at the argon2 limit, introspection at the HTTP limit, flat with
the number of accounts. Over HTTP against the production server, in one run:

    python benchmarks/perf.py [--accounts 10000] [--scale 1000000] [--clients 8]
                              [--worker-class gthread|sync] [--workers 2] [--threads 8]
                              [--profile DIR]

1. Seeds a scratch database (AUTHSVC_DATABASE_URL's server, else an embedded PostgreSQL)
   directly in SQL: ``--accounts`` accounts sharing one precomputed argon2id hash, each with a
   TOTP factor and a live session, plus an API client.
2. Starts ``authsvc serve`` (gunicorn, production settings, the local Twilio fake and SMTP
   sink, Redis for the rate-limit counters when one answers on 127.0.0.1:6379, a trusted proxy
   so every simulated user has its own X-Forwarded-For address).
3. Measures raw argon2id verifies/s in ``--workers`` processes with the service's parameters,
   then full logins/s (POST /v1/login + POST /v1/login/mfa with TOTP) with ``--clients``
   closed-loop clients, then introspection req/s with ``--clients`` keep-alive clients. The
   clients run in one separate process on raw sockets (a few percent of one core), so the
   cores stay with the service.
4. With ``--profile DIR``: samples the workers with ``py-spy record --gil`` (when py-spy is
   installed) during the login and introspection phases and prints where their Python time
   goes (SQL client, HTTP server, Flask, access log, ...). Sampling slows the service (by
   ~20% on 2 cores): take throughput figures from a run without it.
5. With ``--scale N``: adds accounts up to N (SQL, same hash), ANALYZE, and measures login and
   introspection p99 again.

Prints every figure with the command that made it and the load average; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import multiprocessing as mp
import os
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import psycopg
from _harness import ROOT, scratch_database

from authsvc.config import Settings
from authsvc.security import crypto
from authsvc.security.contexts import totp_secret_aad
from authsvc.security.crypto import Cipher
from authsvc.security.passwords import PasswordHasher
from tests.support.fake_twilio import FakeTwilio
from tests.support.smtp_sink import SmtpSink, free_port

PASSWORD = "bench-correct horse battery 42"
COMMAND = "python benchmarks/perf.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# --------------------------------------------------------------------------- seeding
SEED_SQL = """
WITH a AS (
  INSERT INTO accounts (id, email, email_normalized, phone, password_hash, webauthn_user_id,
                        email_verified_at, phone_verified_at)
  SELECT gen_random_uuid(), 'u' || g || '@bench.example.com', 'u' || g || '@bench.example.com',
         '+8190' || lpad(g::text, 8, '0'), %(hash)s, uuid_send(gen_random_uuid()), now(), now()
    FROM generate_series(%(first)s::int, %(last)s::int) g
  RETURNING id
), f AS (
  INSERT INTO factors (id, account_id, type, name, status, totp_secret_enc, confirmed_at)
  SELECT gen_random_uuid(), id, 'totp', 'app', 'active', %(secret_enc)s, now() FROM a
  RETURNING account_id
)
INSERT INTO sessions (id, account_id, acr, amr, auth_time, ip, user_agent, device_name)
SELECT gen_random_uuid(), account_id, 'aal2', '{pwd,otp,mfa}', now(), '10.0.0.1', 'bench', 'bench' FROM f
"""


def seed(url: str, first: int, last: int, password_hash: str, secret_enc: str) -> None:
    """Accounts u<first>..u<last>@bench.example.com, each with a TOTP factor (whose secret does not
    decrypt: they never log in) and a live session."""
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(first, last + 1, 200_000):
            hi = min(last, lo + 199_999)
            conn.execute(SEED_SQL, {"hash": password_hash, "secret_enc": secret_enc, "first": lo, "last": hi})
        conn.execute("ANALYZE")


def seed_login_accounts(url: str, cipher: Cipher, n: int, password_hash: str) -> list[dict]:
    """n accounts that log in during the benchmark, each with its own TOTP secret and a known
    device (a live device token, sent as X-Device-Token, as a returning user's frontend does)."""
    import pyotp

    accounts = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for i in range(n):
            account_id, factor_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), pyotp.random_base32()
            email = f"login{i}@bench.example.com"
            conn.execute(
                "INSERT INTO accounts (id, email, email_normalized, phone, password_hash, webauthn_user_id,"
                " email_verified_at, phone_verified_at) VALUES (%s, %s, %s, %s, %s, %s, now(), now())",
                (account_id, email, email, f"+8180{i:08d}", password_hash, secrets.token_bytes(16)),
            )
            conn.execute(
                "INSERT INTO factors (id, account_id, type, name, status, totp_secret_enc, confirmed_at)"
                " VALUES (%s, %s, 'totp', 'app', 'active', %s, now())",
                (factor_id, account_id, cipher.encrypt(secret.encode(), aad=totp_secret_aad(factor_id))),
            )
            device_token = crypto.new_token()  # a returning user's known device
            conn.execute(
                "INSERT INTO device_tokens (id, account_id, token_hash, device_name, expires_at)"
                " VALUES (%s, %s, %s, 'bench', now() + interval '1 year')",
                (str(uuid.uuid4()), account_id, crypto.hash_token(device_token)),
            )
            accounts.append({"email": email, "secret": secret, "device_token": device_token,
                             "ip": f"10.{1 + i // 65536 % 250}.{i // 256 % 256}.{i % 256}"})
    return accounts


# --------------------------------------------------------------------------- the server
def redis_url() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return "redis://127.0.0.1:6379/0"
    except OSError:
        pass
    return None


def start_server(args, url: str, key: bytes, twilio: FakeTwilio, smtp: SmtpSink) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "AUTHSVC_DATABASE_URL": url,
        "AUTHSVC_ENCRYPTION_KEY": "b1:" + base64.b64encode(key).decode(),
        "AUTHSVC_SMS_PROVIDER": "twilio",
        "AUTHSVC_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "AUTHSVC_TWILIO_AUTH_TOKEN": twilio.auth_token,
        "AUTHSVC_TWILIO_FROM": "+15005550006",
        "AUTHSVC_TWILIO_API_BASE": twilio.base_url,
        "AUTHSVC_SMS_COUNTRIES": "JP,US",
        "AUTHSVC_SMTP_URL": smtp.url,
        "AUTHSVC_PUBLIC_URL": "https://auth.bench.test",
        "AUTHSVC_BIND": f"127.0.0.1:{port}",
        "AUTHSVC_WORKERS": str(args.workers),
        "AUTHSVC_THREADS": str(args.threads),
        "AUTHSVC_TRUSTED_PROXIES": "127.0.0.1/32",
        "AUTHSVC_MIGRATIONS_DIR": str(ROOT / "migrations"),
    }
    env.pop("AUTHSVC_REDIS_URL", None)
    if (r := redis_url()) is not None:
        env["AUTHSVC_REDIS_URL"] = r
    if args.worker_class != "gthread":
        env["AUTHSVC_WORKER_CLASS"] = args.worker_class
    proc = subprocess.Popen(
        [sys.executable, "-c", "from authsvc.cli import main; main()", "--log-level", "WARNING", "serve"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(Path(os.environ.get("TMPDIR", "/tmp")) / f"authsvc-perf-{port}.log", "w"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _ = http_once(port, "GET", "/readyz")
            if status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready")


def http_once(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def children(pid: int) -> list[int]:
    out = []
    for child in os.listdir("/proc"):
        if child.isdigit():
            try:
                if int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(child))
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process (seconds of CPU it has used)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return out


class CpuMeter:
    """CPU used by the service's workers and by the PostgreSQL backends of its database over a
    phase: unlike wall-clock figures this barely depends on what else the machine runs."""

    def __init__(self, server_pid: int, url: str) -> None:
        self.server_pid, self.url = server_pid, url

    def _pids(self) -> tuple[list[int], list[int]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            backends = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        return children(self.server_pid) + [self.server_pid], backends

    def __enter__(self) -> CpuMeter:
        workers, backends = self._pids()
        self._before = cpu_seconds(workers + backends)
        return self

    def __exit__(self, *exc: object) -> None:
        workers, backends = self._pids()
        after = cpu_seconds(workers + backends)
        used = {pid: after[pid] - self._before.get(pid, 0.0) for pid in after}
        self.workers = sum(used.get(p, 0.0) for p in workers)
        self.postgres = sum(used.get(p, 0.0) for p in backends)


def worker_rss_mib(server_pid: int) -> list[float]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != server_pid:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)


# --------------------------------------------------------------------------- raw argon2
def _verify_loop(params: tuple[int, int, int], stored: str, start_at: float, seconds: float) -> tuple[float, float]:
    hasher = PasswordHasher(*params)
    hasher.verify(stored, PASSWORD)
    time.sleep(max(0.0, start_at - time.time()))  # all processes start together
    n, t0, cpu0 = 0, time.monotonic(), time.process_time()
    while time.monotonic() - t0 < seconds:
        hasher.verify(stored, PASSWORD)
        n += 1
    return n / (time.monotonic() - t0), (time.process_time() - cpu0) / n


def raw_argon2(params: tuple[int, int, int], stored: str, processes: int, seconds: float) -> tuple[float, float]:
    """(verifies/s of ``processes`` processes verifying at once, CPU seconds per verify)."""
    with mp.get_context("spawn").Pool(processes) as pool:
        start_at = time.time() + 3.0
        results = pool.starmap(_verify_loop, [(params, stored, start_at, seconds)] * processes)
        return sum(r[0] for r in results), statistics.mean(r[1] for r in results)


# --------------------------------------------------------------------------- clients (own process)
class Conn:
    """A keep-alive HTTP/1.1 connection on a raw socket: pre-built requests, minimal parsing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""

    def request(self, raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buf = b""
            try:
                self.sock.sendall(raw)
                return self._read()
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self) -> tuple[int, bytes, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body, headers

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def raw_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def _code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code"))
    except (ValueError, AttributeError):
        return "?"


def _login_clients(port: int, accounts: list[dict], clients: int, seconds: float, out) -> None:
    import pyotp

    lock = threading.Lock()
    pending = list(reversed(accounts))
    lat: list[float] = []
    tokens: list[str] = []
    failures: dict[str, int] = {}
    end = time.monotonic() + seconds

    def client() -> None:
        conn = Conn(port)
        while time.monotonic() < end:
            with lock:
                if not pending:
                    break
                acct = pending.pop()
            hdr = {"Content-Type": "application/json", "X-Forwarded-For": acct["ip"], "User-Agent": "bench"}
            if acct.get("device_token"):
                hdr["X-Device-Token"] = acct["device_token"]
            t = time.perf_counter()
            s1, b1, _ = conn.request(raw_request("POST", "/v1/login", json.dumps(
                {"email": acct["email"], "password": PASSWORD}).encode(), hdr))
            if s1 != 200:
                key = f"login {s1} {_code(b1)}"
                with lock:
                    failures[key] = failures.get(key, 0) + 1
                continue
            code = pyotp.TOTP(acct["secret"]).now()
            s2, b2, _ = conn.request(raw_request("POST", "/v1/login/mfa", json.dumps(
                {"mfa_token": json.loads(b1)["mfa_token"], "method": "totp", "code": code}).encode(), hdr))
            took = time.perf_counter() - t
            with lock:
                if s2 == 200:
                    lat.append(took)
                    if len(tokens) < 64:
                        tokens.append(json.loads(b2)["access_token"])
                else:
                    key = f"mfa {s2} {_code(b2)}"
                    failures[key] = failures.get(key, 0) + 1
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"elapsed": time.monotonic() - t0, "lat": lat, "tokens": tokens, "failures": failures,
             "cpu": time.process_time()})


def _introspect_clients(port: int, basic: str, tokens: list[str], clients: int, seconds: float, out) -> None:
    lock = threading.Lock()
    lat: list[float] = []
    bad: dict[str, int] = {}
    start_evt = threading.Event()

    def client(i: int) -> None:
        conn = Conn(port)
        body = urllib.parse.urlencode({"token": tokens[i % len(tokens)]}).encode()
        raw = raw_request("POST", "/v1/introspect", body, {
            "Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
        mine: list[float] = []
        for _ in range(20):  # warm-up: connections open, caches filled
            conn.request(raw)
        start_evt.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            status, resp, _ = conn.request(raw)
            took = time.perf_counter() - t
            if status == 200 and b'"active":true' in resp:
                mine.append(took)
            else:
                with lock:
                    bad[str(status)] = bad.get(str(status), 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    cpu0 = time.process_time()
    start_evt.set()
    for t in threads:
        t.join()
    out.put({"elapsed": seconds, "lat": lat, "bad": bad, "cpu": time.process_time() - cpu0})


def in_client_process(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


# --------------------------------------------------------------------------- where the time goes
# Python time in the workers (py-spy --gil: samples of threads holding the GIL, so argon2, which
# releases it, is not counted), by what the sampled stack is doing; the first matching rule wins.
PROFILE_RULES = [
    ("SQL client (psycopg, pool)", ("psycopg",)),
    ("Redis (failure budgets, rate limits)", ("redis/", "limits/", "counters.py")),
    ("ES256 signing (PyJWT, cryptography)", ("jwt/", "tokens.py", "KeyService.sign")),
    ("TOTP check and secret decryption", ("pyotp", "_totp", "Cipher.")),
    ("access log", ("logging/", "logs.py")),
    ("metrics (prometheus)", ("prometheus_client",)),
    ("hash gate and hashing-thread handoff", ("hashing.py", "concurrent/futures/_base.py", "Condition.")),
    ("JSON and body parsing", ("pydantic", "body.py", "json/")),
]


class Profiler:
    """``py-spy record`` on the server's workers for one phase (``--profile``), if py-spy is
    installed (``pip install py-spy``; it is not a dependency of the project)."""

    def __init__(self, out_dir: str | None, server_pid: int, seconds: float, name: str) -> None:
        self.path = Path(out_dir) / f"{name}.txt" if out_dir else None
        self.proc: subprocess.Popen | None = None
        exe = Path(sys.executable).with_name("py-spy")
        if self.path is not None and exe.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(
                [str(exe), "record", "-p", str(server_pid), "--subprocesses", "--gil", "-r", "250",
                 "--format", "raw", "-o", str(self.path), "-d", str(max(1, int(seconds))), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif self.path is not None:
            print(f"(--profile: no py-spy next to {sys.executable}; pip install py-spy)")

    def report(self) -> None:
        if self.proc is None or self.path is None:
            return
        self.proc.wait()
        shares: dict[str, int] = {}
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if "Flask" not in stack and "gunicorn" not in stack or not n.isdigit():
                continue
            total += int(n)
            for name, keys in PROFILE_RULES:  # noqa: B007 - name is used after the loop (for/else)
                if any(k in stack for k in keys):
                    break
            else:
                name = ("our service and API code" if "authsvc/services" in stack or "authsvc/api" in stack
                        else "Flask/werkzeug" if "flask/" in stack or "werkzeug/" in stack else "gunicorn HTTP handling")
            shares[name] = shares.get(name, 0) + int(n)
        print(f"  workers' Python time by part ({total} samples, {self.path}):")
        for name, n in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"    {n / max(1, total) * 100:5.1f}%  {name}")


# --------------------------------------------------------------------------- reporting
def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] * 1000


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def measure_logins(port: int, pool: list[dict], clients: int, seconds: float) -> dict:
    r = in_client_process(_login_clients, port, pool, clients, seconds)
    used = len(r["lat"]) + sum(r["failures"].values())
    del pool[:used]
    r["per_s"] = len(r["lat"]) / r["elapsed"]
    return r


def measure_introspection(port: int, basic: str, tokens: list[str], clients: int, seconds: float) -> dict:
    r = in_client_process(_introspect_clients, port, basic, tokens, clients, seconds)
    r["per_s"] = len(r["lat"]) / r["elapsed"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=10_000, help="accounts in the database (SQL-seeded)")
    ap.add_argument("--scale", type=int, default=0, help="then grow to this many accounts and measure p99 again")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase")
    ap.add_argument("--profile", metavar="DIR", help="also sample the workers with py-spy (if installed) during"
                    " the login and introspection phases and print where their Python time goes")
    args = ap.parse_args()

    settings = Settings()
    params = (settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism)
    stored = PasswordHasher(*params).hash(PASSWORD)
    key = secrets.token_bytes(32)
    cipher = Cipher((("b1", key),))
    login_pool_size = int(args.seconds * 150) * (3 if args.scale else 2)

    print(f"command: {COMMAND}")
    print(f"machine: {os.cpu_count()} cores; {load()}")
    with scratch_database() as url, FakeTwilio() as twilio, SmtpSink() as smtp:
        t = time.monotonic()
        filler = max(0, args.accounts - login_pool_size)
        seed(url, 1, filler, stored, cipher.encrypt(b"JBSWY3DPEHPK3PXP", aad=b"unused"))
        pool = seed_login_accounts(url, cipher, login_pool_size, stored)
        print(f"seeded {filler + len(pool):,} accounts in {time.monotonic() - t:.0f} s")
        client_id, client_secret = "cl_bench", crypto.new_token()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO clients (id, name, secret_hash) VALUES (%s, 'bench', %s)",
                         (client_id, crypto.hash_token(client_secret)))
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

        server, port = start_server(args, url, key, twilio, smtp)
        try:
            print(f"server: authsvc serve, {args.workers} workers, {args.worker_class}"
                  + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
                  + f", Redis {'on' if redis_url() else 'off'}, {args.clients} clients")
            measure_logins(port, pool, args.clients, 2.0)  # warm-up (keys, pools, caches)

            print(f"\n[{load()}]")
            raw, verify_cpu = raw_argon2(params, stored, args.workers, args.seconds / 2)
            print(f"raw argon2id verify (m={params[1]} KiB t={params[0]} p={params[2]}), {args.workers} processes:"
                  f" {raw:7.1f} verifies/s  ({verify_cpu * 1000:.1f} ms CPU per verify)")
            prof = Profiler(args.profile, server.pid, args.seconds - 1, "logins")
            with CpuMeter(server.pid, url) as login_cpu:
                lg = measure_logins(port, pool, args.clients, args.seconds)
            print(f"full logins (password + TOTP), {args.clients} clients: {lg['per_s']:7.1f} logins/s"
                  f"  p50 {pct(lg['lat'], 50):6.1f} ms  p99 {pct(lg['lat'], 99):6.1f} ms"
                  f"  failures {lg['failures'] or 0}  client CPU {lg['cpu'] / lg['elapsed'] * 100:.0f}% of a core")
            print(f"logins / raw argon2: {lg['per_s'] / raw * 100:.0f}%")
            served = len(lg["lat"]) + sum(n for k, n in lg["failures"].items() if "busy" not in k)
            if served:
                w, p = login_cpu.workers / served * 1000, login_cpu.postgres / served * 1000
                print(f"CPU per full login: workers {w:.1f} ms (of which argon2 {verify_cpu * 1000:.1f} ms) + PostgreSQL"
                      f" {p:.1f} ms = {w + p:.1f} ms -> on {os.cpu_count()} idle cores at most"
                      f" {os.cpu_count() * 1000 / (w + p):.0f} logins/s, {verify_cpu * 1000 / (w + p) * 100:.0f}% of raw argon2")
            prof.report()
            tokens = lg["tokens"]

            print(f"\n[{load()}]")
            prof = Profiler(args.profile, server.pid, args.seconds - 1, "introspection")
            with CpuMeter(server.pid, url) as it_cpu:
                it = measure_introspection(port, basic, tokens, args.clients, args.seconds)
            print(f"introspection, {args.clients} keep-alive clients: {it['per_s']:7.0f} req/s"
                  f"  p50 {pct(it['lat'], 50):5.2f} ms  p99 {pct(it['lat'], 99):5.2f} ms"
                  f"  errors {it['bad'] or 0}  client CPU {it['cpu'] / it['elapsed'] * 100:.0f}% of a core")
            n = len(it["lat"]) + sum(it["bad"].values()) + 20 * args.clients  # + the warm-up requests
            if n:
                w, p = it_cpu.workers / n * 1000, it_cpu.postgres / n * 1000
                print(f"CPU per introspection: workers {w:.2f} ms + PostgreSQL {p:.2f} ms = {w + p:.2f} ms"
                      f" -> on {os.cpu_count()} idle cores at most {os.cpu_count() * 1000 / (w + p):.0f} req/s")
            prof.report()
            rss = worker_rss_mib(server.pid)
            print(f"memory per worker (RSS): {', '.join(f'{m:.0f} MiB' for m in rss)}")
            print(f"[{load()}]")

            if args.scale:
                rows = []
                short = max(5.0, args.seconds / 2)
                for label in (f"{args.accounts:,}", f"{args.scale:,}"):
                    if label != f"{args.accounts:,}":
                        t = time.monotonic()
                        seed(url, filler + 1, args.scale - login_pool_size, stored,
                             cipher.encrypt(b"JBSWY3DPEHPK3PXP", aad=b"unused"))
                        print(f"\ngrew to {args.scale:,} accounts in {time.monotonic() - t:.0f} s")
                    lg = measure_logins(port, pool, args.clients, short)
                    it = measure_introspection(port, basic, tokens, args.clients, short)
                    rows.append((label, pct(lg["lat"], 50), pct(lg["lat"], 99), pct(it["lat"], 50), pct(it["lat"], 99), load()))
                print(f"\naccounts      login p50 / p99        introspection p50 / p99   ({args.clients} clients, {short:.0f} s each)")
                for label, lp50, lp, ip50, ip, ld in rows:
                    print(f"{label:>10}  {lp50:7.1f} / {lp:7.1f} ms   {ip50:6.2f} / {ip:6.2f} ms        [{ld}]")
                print(f"ratio (large/small): login p50 {rows[1][1] / rows[0][1]:.2f}, p99 {rows[1][2] / rows[0][2]:.2f};"
                      f" introspection p50 {rows[1][3] / rows[0][3]:.2f}, p99 {rows[1][4] / rows[0][4]:.2f}")
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
