"""Benchmark: a fleet of replicas (issue 17). Prints figures, asserts nothing.

    python benchmarks/fleet.py [--seconds 10] [--delay-ms 2] [--sms-fill 50000] [--skip PART,...]

Needs Debian's HAProxy (as root: ``apt-get install haproxy``; ``.ci/run`` installs it) for the
fleet parts, pgbench and pg_basebackup (PyPI's pgserver ships them) and PostgreSQL
(AUTHSVC_DATABASE_URL's server, else an embedded one); Redis on 127.0.0.1:6379 if running.
Every part runs on this one machine (its cores are shared by the replicas, PostgreSQL, the
clients and anything else running: the load average is printed). Parts (``--skip`` any):

``signins``  sign-ins/s (password + TOTP from known devices, 8 keep-alive clients) of one
             replica (``authsvc serve``, 2 workers) and of 3 such replicas behind HAProxy
             (round robin), on the same cores; then ``audit verify`` of what they wrote.
``audit``    the audit-append ceiling, 32 pgbench clients, the same row each time: plain
             INSERTs into a copy of the table with no trigger or lock; the previous version's
             statements (advisory lock, read the head, insert, commit); this version's
             (one INSERT, queued by the trigger) while the real sealer links rows in a thread,
             and how long the sealer took to catch up.
``sms``      the SMS-cap decision ceiling, 32 pgbench clients: the previous version's
             transaction (advisory lock, six counts of the hour, insert) and this version's
             (``sms_take``: row locks per scope, sharded for the broad caps, per-minute
             counters), caps out of reach, with the hour empty and with ``--sms-fill`` sends.
``relay``    audited writes (``PATCH /v1/account {locale}``) vs reads (``GET /v1/account``),
             32 keep-alive clients on one replica, with PostgreSQL direct and then behind a
             loopback TCP relay that delays each direction by half of ``--delay-ms``.
``failover`` two PostgreSQL clusters (``pg_basebackup -R``, synchronous standby), one replica on
             a multi-host URL with ``target_session_attrs=read-write`` under audited writes;
             the primary is killed (``pg_ctl stop -m immediate``) and the standby promoted
             (``pg_ctl promote``): the write outage, acknowledged writes lost (each acknowledged
             PATCH must have its audit row on the new primary), answers during the gap.
``rolling``  3 replicas behind HAProxy under steady sign-ins; each in turn is drained in
             HAProxy (as a load balancer's readiness check or a Kubernetes preStop does),
             stopped with SIGTERM, started again and put back once ready: failed requests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from _harness import ROOT, scratch_database
from perf import (
    PASSWORD,
    Conn,
    _code,
    _login_clients,
    http_once,
    in_client_process,
    load,
    raw_request,
    redis_url,
    seed_login_accounts,
)
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from authsvc.config import Settings
from authsvc.security.crypto import Cipher
from authsvc.security.passwords import PasswordHasher
from authsvc.services.platform.audit import AuditChain
from authsvc.services.platform.audit_log import AuditLog
from authsvc.store import Store, migrate
from tests.support.fake_twilio import FakeTwilio
from tests.support.smtp_sink import SmtpSink, free_port

COMMAND = "python benchmarks/fleet.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
PARTS = ("signins", "audit", "sms", "relay", "failover", "rolling")


def pg_bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


# --------------------------------------------------------------------------- replicas
class Replica:
    """``authsvc serve`` (gunicorn, production settings) in a child process."""

    def __init__(self, url: str, key: bytes, twilio: FakeTwilio, smtp: SmtpSink, *, workers: int = 2,
                 threads: int = 8, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        self.env.update(
            AUTHSVC_DATABASE_URL=url,
            AUTHSVC_ENCRYPTION_KEY="b1:" + base64.b64encode(key).decode(),
            AUTHSVC_SMS_PROVIDER="twilio", AUTHSVC_TWILIO_ACCOUNT_SID=twilio.account_sid,
            AUTHSVC_TWILIO_AUTH_TOKEN=twilio.auth_token, AUTHSVC_TWILIO_FROM="+15005550006",
            AUTHSVC_TWILIO_API_BASE=twilio.base_url, AUTHSVC_SMS_COUNTRIES="JP,US", AUTHSVC_SMTP_URL=smtp.url,
            AUTHSVC_PUBLIC_URL="https://auth.bench.test", AUTHSVC_BIND=f"127.0.0.1:{self.port}",
            AUTHSVC_WORKERS=str(workers), AUTHSVC_THREADS=str(threads),
            AUTHSVC_TRUSTED_PROXIES="127.0.0.1/32", AUTHSVC_MIGRATIONS_DIR=str(ROOT / "migrations"),
        )
        if (r := redis_url()) is not None:
            self.env["AUTHSVC_REDIS_URL"] = r
        else:
            self.env["AUTHSVC_RATE_LIMITS_PER_PROCESS"] = "true"
        self.log = Path(tempfile.gettempdir()) / f"authsvc-fleet-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Replica:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from authsvc.cli import main; main()", "--log-level", "WARNING", "serve"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log.open("a"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if http_once(self.port, "GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"replica on {self.port} exited with {self.proc.returncode}: see {self.log}")
            time.sleep(0.2)
        raise SystemExit(f"replica on {self.port} did not become ready: see {self.log}")

    def stop(self, timeout: float = 40) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@contextmanager
def replicas(n: int, *args, **kwargs) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for _ in range(n):
            started.append(Replica(*args, **kwargs).start())
        yield started
    finally:
        for r in started:
            r.stop()


class HAProxy:
    """Debian's HAProxy in front of the replicas: round robin, health checks on /readyz, a
    retry on another replica only when a connection cannot be made (never a resent request),
    and an admin socket to drain a replica."""

    def __init__(self, ports: list[int]) -> None:
        self.exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="authsvc-haproxy-"))
        self.sock = self.dir / "admin.sock"
        servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check inter 500 fall 2 rise 1"
                            for i, p in enumerate(ports))
        (self.dir / "haproxy.cfg").write_text(f"""
global
    maxconn 4096
    stats socket {self.sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /readyz
{servers}
""")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> HAProxy:
        self.proc = subprocess.Popen([self.exe, "-f", str(self.dir / "haproxy.cfg"), "-db"],
                                     stdout=subprocess.DEVNULL, stderr=(self.dir / "log").open("w"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if http_once(self.port, "GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"HAProxy did not answer: {(self.dir / 'log').read_text()}")

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            return s.recv(65536).decode()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- HTTP load
def signins(port: int, pool: list[dict], clients: int, seconds: float) -> dict:
    """Closed-loop sign-ins (perf.py's clients, in their own process); each account once."""
    take = pool[: int(seconds * 120) + 50]  # more than 2 cores sign in
    del pool[: len(take)]
    r = in_client_process(_login_clients, port, take, clients, seconds)
    r["rate"] = len(r["lat"]) / r["elapsed"]
    r["failed"] = sum(r["failures"].values())
    return r


def _bearer_clients(port: int, tokens: list[str], clients: int, seconds: float, write: bool, out) -> None:
    lock = threading.Lock()
    done: list[int] = [0]
    bad: dict[str, int] = {}
    acked: dict[str, int] = {}
    start = threading.Event()

    def client(i: int) -> None:
        conn = Conn(port)
        token = tokens[i % len(tokens)]
        hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        raws = [raw_request("PATCH", "/v1/account", json.dumps({"locale": loc}).encode(), hdr) for loc in ("ja", "en")] \
            if write else [raw_request("GET", "/v1/account", b"", hdr)]
        for _ in range(5):
            conn.request(raws[0])
        start.wait()
        n, end = 0, time.monotonic() + seconds
        mine = 0
        while time.monotonic() < end:
            try:
                status, _, _ = conn.request(raws[n % len(raws)])
            except OSError:
                status = 0
            n += 1
            if status == 200:
                mine += 1
            else:
                with lock:
                    bad[str(status)] = bad.get(str(status), 0) + 1
        conn.close()
        with lock:
            done[0] += mine
            acked[token] = acked.get(token, 0) + mine

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    start.set()
    for t in threads:
        t.join()
    out.put({"rate": done[0] / seconds, "ok": done[0], "bad": bad, "acked": acked})


def bearer_load(port: int, tokens: list[str], clients: int, seconds: float, write: bool) -> dict:
    return in_client_process(_bearer_clients, port, tokens, clients, seconds, write)


def login_tokens(port: int, pool: list[dict], n: int) -> list[tuple[str, str]]:
    """(access token, account email) of ``n`` fresh sign-ins."""
    take = pool[:n]
    del pool[:n]
    r = in_client_process(_login_clients, port, take, 8, 60.0)
    if len(r["tokens"]) < min(n, 64):
        raise SystemExit(f"sign-ins for tokens failed: {r['failures']}")
    return r["tokens"]


# --------------------------------------------------------------------------- pgbench
def pgbench(url: str, script: str, clients: int, seconds: float) -> float:
    path = Path(tempfile.mkstemp(prefix="fleet-", suffix=".sql")[1])
    path.write_text(script)
    params = conninfo_to_dict(url)
    env = {**os.environ, "PGHOST": params.get("host", "127.0.0.1"), "PGPORT": str(params.get("port", 5432)),
           "PGUSER": params.get("user", "postgres"), "PGDATABASE": params["dbname"]}
    if params.get("password"):
        env["PGPASSWORD"] = params["password"]
    try:
        out = subprocess.run([pg_bin("pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(int(seconds)),
                              "-f", str(path)], env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        path.unlink()
    m = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)",
                  out.stdout)
    if not m:
        raise SystemExit(f"pgbench failed: {out.stdout[-500:]} {out.stderr[-1500:]}")
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if failed and int(failed.group(1)):
        print(f"    (pgbench: {failed.group(1)} failed transactions)")
    return float(m.group(1))


ROW = "now(), 'bench', 'bench.event', NULL, '{\"reason\": \"a benchmark row of the usual size\"}'"
AUDIT_PLAIN = f"""
INSERT INTO bench_audit_plain (at, actor, action, account_id, detail, nonce, hash, chain)
VALUES ({ROW}, decode(md5(random()::text), 'hex'), sha256(random()::text::bytea), 3);
"""
AUDIT_BEFORE = f"""
BEGIN;
SELECT pg_advisory_xact_lock(7964281);
SELECT id, hash, chain FROM bench_audit_linked ORDER BY id DESC LIMIT 1;
INSERT INTO bench_audit_linked (at, actor, action, account_id, detail, prev_hash, hash, chain)
VALUES ({ROW}, sha256(random()::text::bytea), sha256(random()::text::bytea), 2);
END;
"""
AUDIT_AFTER = f"""
INSERT INTO audit_log (at, actor, action, account_id, detail, nonce, hash, chain)
VALUES ({ROW}, decode(md5(random()::text), 'hex'), sha256(random()::text::bytea), 3);
"""
SMS_VARS = r"""
\set n random(1, 99999999)
\set a random(1, 250)
\set b random(1, 250)
"""
SMS_BEFORE = SMS_VARS + """
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('sms-caps', 0));
DELETE FROM sms_sends WHERE id IN (SELECT id FROM sms_sends WHERE created_at < now() - interval '1 day' ORDER BY id LIMIT 100);
SELECT (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE created_at > now() - interval '1 hour' LIMIT 1000000) t),
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE country = 'JP' AND created_at > now() - interval '1 hour' LIMIT 1000000) t),
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE phone = '+8190' || :n AND created_at > now() - interval '1 hour' LIMIT 5) t),
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE account_id IS NULL AND false LIMIT 5) t),
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE client_key = '10.' || :a || '.' || :b || '.1' AND created_at > now() - interval '1 hour' LIMIT 1000) t),
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE network_key = '10.' || :a || '.' || :b || '.0/24' AND created_at > now() - interval '1 hour' LIMIT 1000) t);
INSERT INTO sms_sends (purpose, phone, country, account_id, client_key, network_key)
VALUES ('bench', '+8190' || :n, 'JP', NULL, '10.' || :a || '.' || :b || '.1', '10.' || :a || '.' || :b || '.0/24');
END;
"""
SMS_AFTER = SMS_VARS + """
BEGIN;
WITH d AS MATERIALIZED (SELECT authsvc_sms_take(
        ARRAY['total:*', 'country:JP', 'network:10.' || :a || '.' || :b || '.0/24',
              'client:10.' || :a || '.' || :b || '.1', 'number:+8190' || :n],
        ARRAY[1000000, 1000000, 1000, 1000, 5], ARRAY[8, 8, 8, 8, 1], true) AS capped),
     rec AS (INSERT INTO sms_sends (purpose, phone, country, account_id, client_key, network_key)
             SELECT 'bench', '+8190' || :n, 'JP', NULL, '10.' || :a || '.' || :b || '.1',
                    '10.' || :a || '.' || :b || '.0/24' FROM d WHERE d.capped = 0)
SELECT capped FROM d;
END;
"""


# --------------------------------------------------------------------------- the delaying relay
def _relay(listen_port: int, target: tuple[str, int], delay: float, ready) -> None:
    """A TCP relay on loopback that holds every chunk ``delay`` seconds in each direction (a
    delay line: latency added, bandwidth not limited)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        except ConnectionError:
            pass
        queue.put_nowait((0, None))
        await sender

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        for s in (writer.get_extra_info("socket"), up_w.get_extra_info("socket")):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    async def main() -> None:
        try:  # on a busy machine a starved relay would add far more than its delay
            os.nice(-10)
        except OSError:
            pass
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextmanager
def relay(target_url: str, delay: float) -> Iterator[str]:
    params = conninfo_to_dict(target_url)
    port = free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_relay, args=(port, (params.get("host", "127.0.0.1"), int(params.get("port", 5432))),
                                            delay, ready), daemon=True)
    proc.start()
    ready.wait(10)
    try:
        yield make_conninfo(target_url, host="127.0.0.1", port=str(port))
    finally:
        proc.terminate()
        proc.join(5)


def round_trip_ms(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        t = time.perf_counter()
        for _ in range(50):
            conn.execute("SELECT 1")
        return (time.perf_counter() - t) / 50 * 1000


# --------------------------------------------------------------------------- parts
def part_signins(args, url, key, twilio, smtp, pool) -> None:
    print("\n== sign-ins/s: one replica vs three behind HAProxy, same cores ==")
    with replicas(1, url, key, twilio, smtp) as (one,):
        signins(one.port, pool, args.clients, 3)  # warm-up
        r1 = signins(one.port, pool, args.clients, args.seconds)
    print(f"1 replica  (2 workers), {args.clients} clients: {r1['rate']:7.1f} sign-ins/s  failed {r1['failed']}  "
          f"{r1['failures'] or ''}")
    with replicas(3, url, key, twilio, smtp) as fleet, HAProxy([r.port for r in fleet]) as lb:
        signins(lb.port, pool, args.clients, 3)
        r3 = signins(lb.port, pool, args.clients, args.seconds)
        print(f"3 replicas (2 workers each) behind HAProxy, {args.clients} clients: {r3['rate']:7.1f} sign-ins/s  "
              f"failed {r3['failed']}  {r3['failures'] or ''}")
    print(f"fleet / one replica: {r3['rate'] / max(r1['rate'], 0.01):.2f} (sign-ins are argon2-bound: the same 2 cores)")
    verify(url, key)


def verify(url: str, key: bytes) -> None:
    store = Store(url, max_size=2)
    try:
        log = AuditLog(store, AuditChain(Cipher((("b1", key),))).install(store))
        t = time.monotonic()
        result = log.verify()
        print(f"audit verify: {'intact' if result.intact else 'BROKEN: ' + str(result.problem)}, "
              f"{result.checked} rows ({result.sealed} sealed), {time.monotonic() - t:.1f} s")
    finally:
        store.close()


def part_audit(args, url, key) -> None:
    print(f"\n== audit-append ceiling, {args.writers} pgbench clients, {args.seconds:.0f} s each ==")
    with psycopg.connect(url, autocommit=True) as conn:
        for t in ("bench_audit_plain", "bench_audit_linked"):
            conn.execute(f"CREATE TABLE {t} (LIKE audit_log INCLUDING DEFAULTS INCLUDING INDEXES)")
    plain = pgbench(url, AUDIT_PLAIN, args.writers, args.seconds)
    print(f"plain INSERTs (no lock, no trigger)            : {plain:8.0f} rows/s")
    before = pgbench(url, AUDIT_BEFORE, args.writers, args.seconds)
    print(f"previous version (advisory lock through COMMIT): {before:8.0f} rows/s")
    store = Store(url, max_size=2)
    chain = AuditChain(Cipher((("b1", key),))).install(store)
    chain.ensure(store)  # as a replica's start does
    log = AuditLog(store, chain)
    with psycopg.connect(url, autocommit=True) as conn:
        sealed0 = conn.execute("SELECT count(*) FROM audit_seals").fetchone()[0]
    log.start(interval=3600)  # the sealer thread, as in every replica
    try:
        after = pgbench(url, AUDIT_AFTER, args.writers, args.seconds)
        t = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            waiting = conn.execute("SELECT count(*) FROM audit_unsealed").fetchone()[0]
            while conn.execute("SELECT count(*) FROM audit_unsealed").fetchone()[0] and time.monotonic() - t < 120:
                time.sleep(0.1)
            caught_up = time.monotonic() - t
            sealed = conn.execute("SELECT count(*) FROM audit_seals").fetchone()[0] - sealed0
    finally:
        log.stop()
        store.close()
    print(f"this version (one INSERT; sealer thread running): {after:8.0f} rows/s")
    print(f"  sealed {sealed} rows; {waiting} waited at the end of the run, sealed {caught_up:.1f} s later "
          f"({sealed / (args.seconds + caught_up):.0f} seals/s over the run)")
    print(f"this version / plain: {after / plain:.2f}   this version / previous: {after / before:.1f}x")


SMS_FILL = """
INSERT INTO sms_sends (purpose, phone, country, client_key, network_key, created_at)
SELECT 'fill', '+8170' || lpad(i::text, 8, '0'), 'JP', '198.51.' || (i %% 250) || '.1',
       '198.51.' || (i %% 250) || '.0/24', now() - random() * interval '50 minutes'
  FROM generate_series(1, %(n)s::int) AS i
"""
SMS_FILL_COUNTERS = """
INSERT INTO sms_cap_counts (scope, minute, sent)
SELECT scope, date_trunc('minute', created_at), count(*) FROM (
  SELECT created_at, unnest(ARRAY['total:*', 'country:' || country, 'number:' || phone,
         'client:' || client_key, 'network:' || network_key]) AS scope FROM sms_sends) s GROUP BY 1, 2
ON CONFLICT (scope, shard, minute) DO UPDATE SET sent = sms_cap_counts.sent + EXCLUDED.sent
"""


def part_sms(args, url) -> None:
    print(f"\n== SMS-cap decision ceiling, {args.writers} pgbench clients, {args.seconds:.0f} s each, "
          "caps out of reach (1,000,000 an hour) ==")
    for fill in (0, args.sms_fill):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM sms_sends")
            conn.execute("DELETE FROM sms_cap_counts")
            if fill:
                conn.execute(SMS_FILL, {"n": fill})
                conn.execute(SMS_FILL_COUNTERS)
            conn.execute("ANALYZE sms_sends")
            conn.execute("ANALYZE sms_cap_counts")
        before = pgbench(url, SMS_BEFORE, args.writers, args.seconds)
        with psycopg.connect(url, autocommit=True) as conn:  # the same hour for both
            conn.execute("DELETE FROM sms_sends WHERE purpose = 'bench'")
        after = pgbench(url, SMS_AFTER, args.writers, args.seconds)
        print(f"{fill:>7} sent in the hour: previous version (one advisory lock, counting the hour) {before:6.0f}/s; "
              f"this version (sharded row locks per scope, per-minute counters) {after:6.0f}/s ({after / before:.1f}x)")
    print("  (shards as the service picks them for these caps: 8 for the global, country, network and client "
          "caps, one row for the per-number cap of 5)")


def part_relay(args, url, key, twilio, smtp, pool) -> None:
    print(f"\n== audited writes vs reads, {args.writers} keep-alive clients, one replica (2 workers x 8 threads) ==")
    with relay(url, 0.0) as zero:
        overhead = round_trip_ms(zero) - round_trip_ms(url)  # the relay's own cost on this machine
    each_way = max(0.0, (args.delay_ms - overhead) / 2) / 1000
    for _ in range(2):  # the delay that gives the round trip asked for, on this machine now
        with relay(url, each_way) as probe:
            extra = round_trip_ms(probe) - round_trip_ms(url)
        if abs(extra - args.delay_ms) < 0.3:
            break
        each_way = max(0.0, each_way - (extra - args.delay_ms) / 2000)
    print(f"the relay itself adds {overhead:.2f} ms to a round trip here; it delays each direction "
          f"{each_way * 1000:.2f} ms for {args.delay_ms:.0f} ms in all")
    rows = []
    for delay in (None, each_way):
        with relay(url, delay) if delay is not None else _direct(url) as db_url:
            rtt = round_trip_ms(db_url)
            with replicas(1, db_url, key, twilio, smtp) as (one,):
                tokens = login_tokens(one.port, pool, 64)
                writes = bearer_load(one.port, tokens, args.writers, args.seconds, write=True)
                reads = bearer_load(one.port, tokens, args.writers, args.seconds, write=False)
        rows.append((delay, rtt, writes, reads))
        print(f"database {'direct' if delay is None else f'{args.delay_ms:.0f} ms away'} (SELECT 1 round trip {rtt:.2f} ms): "
              f"writes {writes['rate']:6.0f}/s {writes['bad'] or ''}  reads {reads['rate']:6.0f}/s {reads['bad'] or ''}  "
              f"writes/reads {writes['rate'] / max(reads['rate'], 0.01):.2f}")


@contextmanager
def _direct(url: str) -> Iterator[str]:
    yield url


def part_failover(args, key, twilio, smtp, stored) -> None:
    for attrs in ("target_session_attrs=read-write&", ""):
        print("\n== failover: primary killed under audited writes, synchronous standby promoted; multi-host URL "
              f"{'with target_session_attrs=read-write' if attrs else 'without target_session_attrs'} ==")
        _failover(args, key, twilio, smtp, stored, attrs)


def _failover(args, key, twilio, smtp, stored, attrs: str) -> None:
    from tests.faults.pgcluster import PgCluster

    primary = PgCluster().init()
    standby = None
    try:
        primary.start()
        primary.wait_ready()
        migrate.upgrade(primary.url, ROOT / "migrations")
        standby = primary.standby(synchronous=True)
        standby.start()
        standby.wait_ready()
        pool = seed_login_accounts(primary.url, Cipher((("b1", key),)), 64, stored)
        url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
               f"?{attrs}connect_timeout=2")
        with replicas(1, url, key, twilio, smtp) as (one,):
            tokens = login_tokens(one.port, pool, 32)
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            seconds = args.failover_seconds
            load_proc = ctx.Process(target=_timed_writes, args=(one.port, tokens, 16, seconds, q))
            load_proc.start()
            time.sleep(seconds / 3)
            t_kill = time.time()
            primary.kill()
            time.sleep(0.5)
            standby.promote()
            t_promoted = time.time()
            result = q.get(timeout=seconds + 60)
            load_proc.join(10)
        acked = result["acked"]
        with psycopg.connect(standby.url, autocommit=True) as conn:
            stored_rows = dict(conn.execute(
                "SELECT account_id::text, count(*) FROM audit_log WHERE action = 'account.locale_changed' "
                "GROUP BY 1").fetchall())
        lost = sum(max(0, n - stored_rows.get(acct, 0)) for acct, n in acked.items())
        fails = [t for t, s in result["events"] if s != 200 and t > t_kill - 0.05]
        last_fail = max(fails) if fails else t_kill
        oks_after = [t for t, s in result["events"] if s == 200 and t > last_fail]
        first_ok = min(oks_after) if oks_after else None
        first_fail = min(fails) if fails else t_kill
        statuses: dict[str, int] = {}
        for _t, s in result["events"]:
            if s != 200:
                statuses[str(s)] = statuses.get(str(s), 0) + 1
        print(f"acknowledged writes: {sum(acked.values())}, lost on the new primary: {lost}")
        print(f"answers other than 200: {statuses or 'none'}")
        if first_ok is not None:
            print(f"write outage: {first_ok - first_fail:.2f} s from the first failed write to the first "
                  f"acknowledged one after the gap; writes back {first_ok - t_promoted:.2f} s after `pg_ctl "
                  f"promote` returned (kill to promoted {t_promoted - t_kill:.2f} s; {len(fails)} writes failed)")
        else:
            print("no write succeeded after the kill")
    finally:
        primary.destroy()
        if standby is not None:
            standby.destroy()


def _timed_writes(port: int, tokens: list[str], clients: int, seconds: float, out) -> None:
    """Closed-loop PATCH /v1/account; every answer with its time; acknowledged writes per account."""
    lock = threading.Lock()
    events: list[tuple[float, int]] = []
    acked: dict[str, int] = {}

    def client(i: int) -> None:
        conn = Conn(port)
        token = tokens[i % len(tokens)]
        account = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
        hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            body = json.dumps({"locale": ("ja", "en")[n % 2]}).encode()
            n += 1
            try:
                status, _, _ = conn.request(raw_request("PATCH", "/v1/account", body, hdr))
            except OSError:
                status = 0
            with lock:
                events.append((time.time(), status))
                if status == 200:
                    acked[account] = acked.get(account, 0) + 1
            if status != 200:
                time.sleep(0.02)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"events": events, "acked": acked})


def _steady_signins(port: int, accounts: list[dict], clients: int, stop, out) -> None:
    """Sign-ins until ``stop`` is set, cycling through ``accounts`` (an account signs in again
    only after 31 s, in a new TOTP step)."""
    import pyotp

    lock = threading.Lock()
    queue = [(0.0, a) for a in accounts]
    ok, failures = [0], {}

    def client() -> None:
        conn = Conn(port)
        while not stop.is_set():
            with lock:
                last, acct = queue.pop(0)
            if time.monotonic() - last < 31:
                time.sleep(31 - (time.monotonic() - last))
            hdr = {"Content-Type": "application/json", "X-Forwarded-For": acct["ip"], "User-Agent": "bench",
                   "X-Device-Token": acct["device_token"]}
            outcome = None
            try:
                s1, b1, _ = conn.request(raw_request("POST", "/v1/login", json.dumps(
                    {"email": acct["email"], "password": PASSWORD}).encode(), hdr))
                if s1 != 200:
                    outcome = f"login {s1} {_code(b1)}"
                else:
                    s2, b2, _ = conn.request(raw_request("POST", "/v1/login/mfa", json.dumps(
                        {"mfa_token": json.loads(b1)["mfa_token"], "method": "totp",
                         "code": pyotp.TOTP(acct["secret"]).now()}).encode(), hdr))
                    outcome = None if s2 == 200 else f"mfa {s2} {_code(b2)}"
            except OSError as exc:
                outcome = f"connection {type(exc).__name__}"
                conn.close()
            with lock:
                queue.append((time.monotonic(), acct))
                if outcome is None:
                    ok[0] += 1
                else:
                    failures[outcome] = failures.get(outcome, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"ok": ok[0], "failures": failures})


def part_rolling(args, url, key, twilio, smtp, pool) -> None:
    print("\n== rolling restart of 3 replicas behind HAProxy under steady sign-ins ==")
    with replicas(3, url, key, twilio, smtp) as fleet, HAProxy([r.port for r in fleet]) as lb:
        ctx = mp.get_context("spawn")
        q, stop = ctx.Queue(), ctx.Event()
        take = pool[:2500]
        del pool[:2500]
        clients = ctx.Process(target=_steady_signins, args=(lb.port, take, args.clients, stop, q))
        clients.start()
        time.sleep(3)
        t0 = time.monotonic()
        for i, r in enumerate(fleet):
            lb.admin(f"set server be/r{i} state drain")  # what a failing readiness check or preStop does
            time.sleep(1.0)  # in-flight requests finish; new ones go to the others
            r.stop()
            r.start()
            lb.admin(f"set server be/r{i} state ready")
            time.sleep(1.0)
        took = time.monotonic() - t0
        time.sleep(2)
        stop.set()
        result = q.get(timeout=120)
        clients.join(10)
    failed = sum(result["failures"].values())
    print(f"3 replicas drained, stopped (SIGTERM), started and put back one after another in {took:.0f} s; "
          f"sign-ins {result['ok']}, failed {failed} {result['failures'] or ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    ap.add_argument("--clients", type=int, default=8, help="sign-in clients")
    ap.add_argument("--writers", type=int, default=32, help="concurrent writers (pgbench, HTTP)")
    ap.add_argument("--delay-ms", type=float, default=2.0, help="round trip the relay adds to the database")
    ap.add_argument("--failover-seconds", type=float, default=12.0)
    ap.add_argument("--sms-fill", type=int, default=50_000, help="SMS already sent in the hour (second SMS run)")
    ap.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if unknown := skip - set(PARTS):
        raise SystemExit(f"unknown parts: {unknown}")
    needs_lb = {"signins", "rolling"} - skip
    if needs_lb and not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()):
        raise SystemExit("HAProxy is missing: as root `apt-get install haproxy`, or --skip signins,rolling")

    print(f"command: {COMMAND}")
    print(f"machine: {os.cpu_count()} cores, shared with whatever else runs; {load()}")
    settings = Settings()
    stored = PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_cost,
                            settings.argon2_parallelism).hash(PASSWORD)
    key = secrets.token_bytes(32)
    started = time.monotonic()
    with scratch_database() as url, FakeTwilio() as twilio, SmtpSink() as smtp:
        pool = seed_login_accounts(url, Cipher((("b1", key),)), 2 * (int(args.seconds * 120) + 50) + 2 * 410 + 64 * 2 + 2500,
                                   stored)
        print(f"seeded {len(pool)} accounts with a TOTP factor and a known device")
        if "signins" not in skip:
            part_signins(args, url, key, twilio, smtp, pool)
        if "relay" not in skip:
            part_relay(args, url, key, twilio, smtp, pool)
        if "rolling" not in skip:
            part_rolling(args, url, key, twilio, smtp, pool)
        if "audit" not in skip:
            part_audit(args, url, key)
        if "sms" not in skip:
            part_sms(args, url)
        if "failover" not in skip:
            part_failover(args, key, twilio, smtp, stored)
    print(f"\ntotal {time.monotonic() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
