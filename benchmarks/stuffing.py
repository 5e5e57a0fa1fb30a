"""Benchmark: a credential-stuffing replay against the service run as an operator would run it,
while honest users on known devices keep signing in (issue 6, "Done when").

    python benchmarks/stuffing.py [--before 20] [--attack 60] [--after 20] [--attackers 48]
                                  [--attack-procs 2] [--attack-rate 0] [--addresses 1000] [--honest 100] [--honest-rate 2]
                                  [--new-device-rate 0.5] [--registration-rate 0.2]

- the service: ``authsvc serve`` (gunicorn, production settings) on a free 127.0.0.1 port, with
  the machine's Redis (AUTHSVC_REDIS_URL, default redis://127.0.0.1:6379/0; a key prefix of its
  own, deleted afterwards) and AUTHSVC_TRUSTED_PROXIES=127.0.0.1/32 standing in for the proxy:
  every request carries the client address in ``X-Forwarded-For`` (documentation and benchmark
  ranges only; nothing is ever sent to them);
- honest users: accounts with TOTP, each on its known device (the registration's
  ``device_token``), logging in with password + TOTP at a steady total rate from their own
  addresses;
- honest strangers (issue 16): people signing in from a new phone (a fresh address each, its
  own network, no device token, a new X-Device-Id, their email also on the leaked list) at
  ``--new-device-rate`` per second, and people registering (a fresh address each) at
  ``--registration-rate``; both honour ``Retry-After`` (429 or 503) as an app does, giving up
  when the next try would start after 10 s; a new-device sign-in succeeds with its TOTP step;
- the attacker: a leaked list (mostly unknown emails; some registered ones, a few with the real
  password), replayed from ``--attack-procs`` processes of its own (asyncio, raw sockets,
  ``--attackers`` connections in all) that send the next request as soon as the previous answer
  arrives, or at ``--attack-rate`` requests/s in all (each on a kept-alive connection, unless
  ``--no-attacker-keepalive``), and ignore ``Retry-After``, rotating over ``--addresses`` addresses (60% IPv4
  over /24s, 40% IPv6 over /48s, each address its own /64; past what 198.18.0.0/15 holds, as
  for a residential proxy pool of 100,000, every further address is its own IPv6 /48); a
  password hit is followed by one guessed TOTP code (a takeover if it worked).

Prints, per phase (before, during, after the attack): for each honest stream (known devices,
new devices, registrations) its success rate (within 10 s) and p50/p99 of the whole sign-in or
registration including waits, attacker requests and their ratio to honest requests, attacker
answers by status, password hits, takeovers, SMS the attack caused (to the leaked list's
registered accounts: honest sign-ups and new-device notices are not the attack's); and the load
average. Bounded: it stops by itself
after the phases (plus set-up, typically under a minute). Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import multiprocessing as mp
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import redis
from _harness import bench_app

from tests.support.env import settings_env
from tests.support.flows import enroll_totp, new_email, new_phone, register

PASSWORD_HIT_SHARE = 0.01  # of list entries: a registered email with its real password
REGISTERED_SHARE = 0.05  # of list entries: a registered email with a wrong password
NEWCOMER_SHARE = 0.01  # of list entries: the email of someone who will sign in from a new phone
PATIENCE = 10.0  # seconds an honest stranger keeps honouring Retry-After


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


V4_ROOM = 512 * 6  # 6 addresses in each /24 of 198.18.0.0/15 (the benchmarking range)


def attacker_addresses(n: int, rng: random.Random) -> list[str]:
    v4 = min(int(n * 0.6), V4_ROOM)
    out = []
    for i in range(v4):  # 6 addresses per /24 in 198.18.0.0/15
        out.append(str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.0")) + (i // 6) * 256 + 10 + i % 6)))
    v6 = n - v4
    per48 = 4 if v6 <= 4 * 0x8000 // 4 and n <= 10000 else 1  # a large pool: every address its own /48
    for i in range(v6):  # in 2001:db8:0000-7fff::/48 (documentation); honest strangers use 8000-ffff
        out.append(f"2001:db8:{i // per48:x}:{i % per48:x}::{rng.randrange(1, 0xffff):x}")
    rng.shuffle(out)
    return out


class Service:
    """``authsvc serve`` in a child process (gunicorn)."""

    def __init__(self, settings, port: int, redis_url: str, prefix: str, extra_env: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        env.update({
            **settings_env(settings),
            "AUTHSVC_PUBLIC_URL": "https://auth.bench.invalid",
            "AUTHSVC_REDIS_URL": redis_url,
            "AUTHSVC_RATE_LIMIT_PREFIX": prefix,
            "AUTHSVC_TRUSTED_PROXIES": "127.0.0.1/32",
            "AUTHSVC_SMS_COUNTRIES": "JP",
            "AUTHSVC_BIND": f"127.0.0.1:{port}",
            **extra_env,
        })
        exe = Path(sys.executable).with_name("authsvc")
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"authsvc-stuffing-{port}.log", "w")
        self.proc = subprocess.Popen([str(exe), "--log-level", "WARNING", "serve"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.port = port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(port, "GET", "/healthz", None, {})[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the service did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def request(port: int, method: str, path: str, body: dict | None, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return resp.status, data
    finally:
        conn.close()


def request_ra(port: int, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, float | None]:
    """POST ``body``; (status, body, Retry-After seconds or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        ra = resp.getheader("Retry-After")
        return resp.status, data, float(ra) if ra and ra.isdigit() else None
    finally:
        conn.close()


# ---------------------------------------------------------------------- the attacker (processes)
# The attacker runs in processes of its own (``--attack-procs``), each an asyncio loop driving
# its share of ``--attackers`` kept-alive raw-socket connections: a Python client in the
# benchmark's own process topped out at ~400 requests/s (it shared one GIL with the honest
# streams), which is the client's limit, not the service's. Requests are built once per list
# entry as bytes; answers are read by Content-Length.

OFF, STOP = -1, -2


def _http_request(path: str, body: bytes, ip: str, port: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"User-Agent: python-requests/2.31\r\nX-Forwarded-For: {ip}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _exchange(reader, writer, raw: bytes) -> tuple[int, bytes, bool]:
    """Send one request; (status, body, server keeps the connection)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


def attacker_process(port: int, leaked: list, addresses: list, conns: int, rate: float, keepalive: bool,
                     start: int, stride: int, phase_value, results) -> None:
    """One attacker process: ``conns`` connections, closed loop (``rate`` 0) or paced at ``rate``
    requests/s in total; entry ``start``, ``start + stride``, ... of the list. Puts its per-phase
    counts on ``results`` when ``phase_value`` says STOP."""
    import asyncio

    counts: dict[int, dict] = {}
    cursor = [start]

    def tally(phase: int) -> dict:
        return counts.setdefault(phase, {"requests": 0, "status": Counter(), "hits": 0, "takeovers": 0})

    async def one_connection(k: int) -> None:
        arng = random.Random(secrets.randbits(32))
        reader = writer = None
        interval = conns / rate if rate > 0 else 0.0
        nxt = time.monotonic() + arng.random() * interval
        while True:
            phase = phase_value.value
            if phase == STOP:
                break
            if phase == OFF:
                await asyncio.sleep(0.05)
                nxt = time.monotonic()
                continue
            if interval:
                delay = nxt - time.monotonic()
                nxt = max(nxt, time.monotonic() - interval) + interval  # no catch-up bursts
                if delay > 0:
                    await asyncio.sleep(delay)
            i = cursor[0]
            cursor[0] += stride
            email, password = leaked[i % len(leaked)]
            ip = addresses[i % len(addresses)]
            t = tally(phase)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                body = json.dumps({"email": email, "password": password}).encode()
                status, answer, keep = await asyncio.wait_for(
                    _exchange(reader, writer, _http_request("/v1/login", body, ip, port)), 20)
                t["requests"] += 1
                t["status"][str(status)] += 1
                if status == 200:  # a password hit: one guessed TOTP code
                    t["hits"] += 1
                    token = json.loads(answer).get("mfa_token", "")
                    guess = json.dumps({"mfa_token": token, "method": "totp",
                                        "code": f"{arng.randrange(10 ** 6):06d}"}).encode()
                    s2, _, keep = await asyncio.wait_for(
                        _exchange(reader, writer, _http_request("/v1/login/mfa", guess, ip, port)), 20)
                    t["requests"] += 1
                    t["takeovers"] += s2 == 200
                if not (keep and keepalive):
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                t["requests"] += 1
                t["status"][type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(one_connection(k) for k in range(conns)))

    cpu = time.process_time()
    asyncio.run(run())
    results.put({"phases": counts, "cpu": time.process_time() - cpu})


class Stream:
    """One honest stream's outcomes in one phase."""

    def __init__(self) -> None:
        self.ok = 0
        self.fail: Counter = Counter()
        self.latency: list[float] = []
        self.requests = 0


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.streams = {"new device": Stream(), "registration": Stream()}
        self.honest_ok = 0
        self.honest_fail = Counter()
        self.honest_latency: list[float] = []
        self.honest_requests = 0
        self.attacker_requests = 0
        self.attacker_status = Counter()
        self.password_hits = 0
        self.takeovers = 0
        self.sms = 0
        self.seconds = 0.0
        self.load = ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=float, default=20)
    ap.add_argument("--attack", type=float, default=60)
    ap.add_argument("--after", type=float, default=20)
    ap.add_argument("--attackers", type=int, default=48, help="attacker connections, in all")
    ap.add_argument("--attack-procs", type=int, default=2, help="attacker processes (asyncio, raw sockets)")
    ap.add_argument("--attack-rate", type=float, default=0,
                    help="attacker requests/s in all (0: closed loop, each connection sends when answered)")
    ap.add_argument("--addresses", type=int, default=1000)
    ap.add_argument("--attacker-keepalive", action=argparse.BooleanOptionalAction, default=True,
                    help="attackers reuse their connection (default), or open one per request")
    ap.add_argument("--list-size", type=int, default=20000)
    ap.add_argument("--honest", type=int, default=100, help="honest accounts (TOTP allows ~1 login per 30 s each)")
    ap.add_argument("--honest-rate", type=float, default=2.0, help="honest logins per second, in total")
    ap.add_argument("--victims", type=int, default=20, help="registered accounts in the leaked list")
    ap.add_argument("--new-device-rate", type=float, default=0.5, help="honest sign-ins from new phones per second")
    ap.add_argument("--registration-rate", type=float, default=0.2, help="honest registrations per second")
    ap.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an AUTHSVC_* setting for the service (repeatable), e.g. AUTHSVC_GATE_THREADS=16")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    redis_url = os.environ.get("AUTHSVC_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"authsvc-bench-{secrets.token_hex(4)}"

    with bench_app() as (app, settings, twilio, smtp):
        client = app.test_client()
        t0 = time.perf_counter()
        honest = []
        for i in range(args.honest):
            acct = register(client, twilio, smtp)
            f = enroll_totp(client, acct["enrollment_token"])
            honest.append({**acct, "totp": f["totp"], "ip": f"192.0.2.{1 + i % 250}" if i < 250 else f"203.0.113.{i % 250}",
                           # at least the step the enrollment used up: a login may use the
                           # next one (TOTP accepts one step either side, each step once)
                           "last_step": int(time.time() // 30)})
        # people who will sign in from a new phone: one account each (TOTP allows one login per
        # 30 s step), their emails also on the leaked list
        total_s = args.before + args.attack + args.after
        newcomers = []
        for _ in range(int(args.new_device_rate * total_s) + 5):
            acct = register(client, twilio, smtp)
            f = enroll_totp(client, acct["enrollment_token"])
            newcomers.append({**acct, "totp": f["totp"], "step": int(time.time() // 30)})
        victims = []
        for _ in range(args.victims):
            acct = register(client, twilio, smtp)
            enroll_totp(client, acct["enrollment_token"])
            victims.append(acct)
        leaked = []
        for i in range(args.list_size):
            roll = rng.random()
            if roll < PASSWORD_HIT_SHARE:
                v = rng.choice(victims)
                leaked.append((v["email"], v["password"]))
            elif roll < PASSWORD_HIT_SHARE + REGISTERED_SHARE:
                leaked.append((rng.choice(victims)["email"], f"leaked-{secrets.token_hex(5)}"))
            elif roll < PASSWORD_HIT_SHARE + REGISTERED_SHARE + NEWCOMER_SHARE and newcomers:
                leaked.append((rng.choice(newcomers)["email"], f"leaked-{secrets.token_hex(5)}"))
            else:
                leaked.append((f"user{i}.{secrets.token_hex(3)}@mail{i % 50}.example", f"leaked-{secrets.token_hex(5)}"))
        addresses = attacker_addresses(args.addresses, rng)
        victim_phones = {v["phone"] for v in victims}
        setup_s = time.perf_counter() - t0
        time.sleep(1)  # let the set-up's messages leave
        twilio.clear()

        port = free_port()
        service = Service(settings, port, redis_url, prefix, dict(kv.split("=", 1) for kv in args.service_env))
        stop_all = threading.Event()
        phases = [Phase("before"), Phase("during"), Phase("after")]
        current = [phases[0]]
        pool_lock = threading.Lock()
        honest_queue = list(honest)

        def take_account() -> dict | None:
            now_step = int(time.time() // 30)
            with pool_lock:
                for i, acct in enumerate(honest_queue):
                    if acct["last_step"] < now_step + 1:
                        honest_queue.pop(i)
                        acct["last_step"] = max(acct["last_step"] + 1, now_step - 1)
                        return acct
            return None

        def give_back(acct: dict) -> None:
            with pool_lock:
                honest_queue.append(acct)

        def honest_login() -> None:
            acct = take_account()
            phase = current[0]
            if acct is None:
                with phase.lock:
                    phase.honest_fail["no free account"] += 1
                return
            headers = {"X-Forwarded-For": acct["ip"], "X-Device-Token": acct["device_token"],
                       "User-Agent": "BenchApp/1.0 (iPhone)"}
            t = time.perf_counter()
            try:
                s1, b1 = request(port, "POST", "/v1/login", {"email": acct["email"], "password": acct["password"]}, headers)
                requests_made = 1
                ok = False
                if s1 == 200:
                    code = acct["totp"].at(acct["last_step"] * 30)
                    s2, b2 = request(port, "POST", "/v1/login/mfa",
                                     {"mfa_token": b1["mfa_token"], "method": "totp", "code": code}, headers)
                    requests_made = 2
                    ok = s2 == 200
                    outcome = f"mfa {s2} {b2.get('code', '')}"
                else:
                    outcome = f"login {s1} {b1.get('code', '')}"
            except OSError as exc:
                requests_made, ok, outcome = 1, False, type(exc).__name__
            elapsed = time.perf_counter() - t
            give_back(acct)
            with phase.lock:
                phase.honest_requests += requests_made
                if ok:
                    phase.honest_ok += 1
                    phase.honest_latency.append(elapsed)
                else:
                    phase.honest_fail[outcome] += 1

        fresh = iter(range(1, 1 << 30))

        def fresh_address() -> str:  # a fresh address, its own /48, never an attacker's network
            return f"2001:db8:{0x8000 + next(fresh) % 0x8000:x}:1::{secrets.randbelow(0xffff) + 1:x}"

        def patiently(phase: Phase, stream: str, steps) -> None:
            """Run ``steps(headers)`` (a generator of requests' (status, body, retry-after)),
            honouring Retry-After until PATIENCE; record the outcome in ``stream``."""
            t = time.perf_counter()
            headers = {"X-Forwarded-For": fresh_address(), "User-Agent": "BenchApp/1.0 (iPhone)",
                       "X-Device-Id": secrets.token_hex(8)}
            requests_made, outcome = 0, "gave up"
            ok = False
            while True:
                try:
                    status, body, n = steps(headers)
                except OSError as exc:
                    status, body, n = type(exc).__name__, {}, 1
                requests_made += n
                if status in (200, 201, 202):
                    ok = True
                    break
                outcome = f"{status} {body.get('code', '')}"
                wait = body.get("_retry_after")
                if status not in (429, 503) or wait is None:
                    break
                if time.perf_counter() - t + wait > PATIENCE:
                    break
                time.sleep(wait)
            elapsed = time.perf_counter() - t
            with phase.lock:
                st = phase.streams[stream]
                st.requests += requests_made
                if ok and elapsed <= PATIENCE:
                    st.ok += 1
                    st.latency.append(elapsed)
                else:
                    st.fail[outcome if not ok else "over 10 s"] += 1

        def new_device_signin() -> None:
            phase = current[0]
            with pool_lock:
                now_step = int(time.time() // 30)
                # TOTP accepts one step either side, each step once: the next unused one
                acct = next((a for a in newcomers if a["step"] < now_step + 1), None)
                if acct is not None:
                    newcomers.remove(acct)
                    newcomers.append(acct)
                    acct["step"] = max(acct["step"] + 1, now_step - 1)
            if acct is None:
                with phase.lock:
                    phase.streams["new device"].fail["no free account"] += 1
                return

            def steps(headers):
                s1, b1, ra = request_ra(port, "/v1/login", {"email": acct["email"], "password": acct["password"]}, headers)
                if s1 != 200:
                    return s1, {**b1, "_retry_after": ra}, 1
                s2, b2, _ = request_ra(port, "/v1/login/mfa", {"mfa_token": b1["mfa_token"], "method": "totp",
                                                               "code": acct["totp"].at(acct["step"] * 30)}, headers)
                return s2, b2, 2

            patiently(phase, "new device", steps)

        def registration() -> None:
            phase = current[0]
            email, phone = new_email(), new_phone()

            def steps(headers):
                st, body, ra = request_ra(port, "/v1/registrations",
                                          {"email": email, "phone": phone, "password": "correct horse battery staple 42"},
                                          headers)
                return st, {**body, "_retry_after": ra}, 1

            patiently(phase, "registration", steps)

        def driver(rate: float, target) -> None:
            if rate <= 0:
                return
            interval = 1 / rate
            nxt = time.monotonic()
            workers: list[threading.Thread] = []
            while not stop_all.is_set():
                nxt += interval
                th = threading.Thread(target=target, daemon=True)
                th.start()
                workers.append(th)
                workers = [w for w in workers if w.is_alive()]
                delay = nxt - time.monotonic()
                if delay > 0:
                    stop_all.wait(delay)
            for w in workers:
                w.join(20)

        threads = [threading.Thread(target=driver, args=(args.honest_rate, honest_login), daemon=True),
                   threading.Thread(target=driver, args=(args.new_device_rate, new_device_signin), daemon=True),
                   threading.Thread(target=driver, args=(args.registration_rate, registration), daemon=True)]
        ctx = mp.get_context("spawn")  # the children hold no copy of this process's threads or pools
        phase_value = ctx.Value("i", OFF, lock=False)
        results = ctx.Queue()
        procs = args.attack_procs
        attackers = [ctx.Process(target=attacker_process, daemon=True,
                                 args=(port, leaked, addresses, args.attackers // procs + (k < args.attackers % procs),
                                       args.attack_rate / procs, args.attacker_keepalive, k, procs, phase_value, results))
                     for k in range(procs)]
        for proc in attackers:
            proc.start()
        for th in threads:
            th.start()
        attacker_cpu = 0.0
        try:
            for phase, seconds in zip(phases, (args.before, args.attack, args.after), strict=True):
                current[0] = phase
                sms_before = sum(m["to"] in victim_phones for m in twilio.snapshot())
                if phase.name == "during":
                    phase_value.value = phases.index(phase)
                start = time.perf_counter()
                time.sleep(seconds)
                if phase.name == "during":
                    phase_value.value = OFF
                phase.seconds = time.perf_counter() - start
                phase.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                time.sleep(0.5 if phase.name != "after" else 2)
                phase.sms = sum(m["to"] in victim_phones for m in twilio.snapshot()) - sms_before
        finally:
            stop_all.set()
            phase_value.value = STOP
            for _ in attackers:
                try:
                    got = results.get(timeout=30)
                except Exception:  # noqa: BLE001 - a lost attacker process: its counts are missing
                    print("warning: an attacker process sent no counts", file=sys.stderr)
                    continue
                attacker_cpu += got["cpu"]
                for index, t in got["phases"].items():
                    ph = phases[index]
                    ph.attacker_requests += t["requests"]
                    ph.attacker_status.update(t["status"])
                    ph.password_hits += t["hits"]
                    ph.takeovers += t["takeovers"]
            for proc in attackers:
                proc.join(10)
            for th in threads:
                th.join(30)
            service.stop()
            r = redis.Redis.from_url(redis_url)
            keys = list(r.scan_iter(match=prefix + "*", count=1000))
            for k in range(0, len(keys), 500):
                r.delete(*keys[k:k + 500])

    print(f"credential stuffing vs known devices: authsvc serve (gunicorn, default workers), Redis, trusted proxy; "
          f"{' '.join(args.service_env) + '; ' if args.service_env else ''}{args.attackers} attacker connections in {args.attack_procs} processes "
          f"({'closed loop' if not args.attack_rate else f'paced at {args.attack_rate:g}/s'}, "
          f"client CPU {attacker_cpu:.1f} s) over {len(addresses)} addresses "
          f"({sum(':' not in a for a in addresses)} IPv4, {sum(':' in a for a in addresses)} IPv6); "
          f"list {len(leaked)} entries; {args.honest} honest accounts at {args.honest_rate}/s; set-up {setup_s:.0f} s")
    print(f"{'phase':<7} {'secs':>5} {'known ok':>10} {'p50 ms':>8} {'p99 ms':>8} {'honest req':>10} "
          f"{'attack req':>10} {'ratio':>7} {'hits':>5} {'takeover':>8} {'SMS':>4}  load avg (1/5/15 min)")
    for p in phases:
        total = p.honest_ok + sum(p.honest_fail.values())
        lat = sorted(p.honest_latency)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        honest_requests = p.honest_requests + sum(st.requests for st in p.streams.values())
        ratio = p.attacker_requests / honest_requests if honest_requests else float("nan")
        print(f"{p.name:<7} {p.seconds:5.0f} {100 * p.honest_ok / total if total else float('nan'):9.1f}% "
              f"{p50:8.0f} {p99:8.0f} {honest_requests:10d} {p.attacker_requests:10d} {ratio:7.1f} "
              f"{p.password_hits:5d} {p.takeovers:8d} {p.sms:4d}  {p.load}")
    print(f"{'phase':<7} {'stream':<13} {'ok <= 10 s':>10} {'p50 ms':>8} {'p99 ms':>8} {'n':>5} {'requests':>9}")
    for p in phases:
        for name, st in p.streams.items():
            total = st.ok + sum(st.fail.values())
            lat = sorted(st.latency)
            p50 = statistics.median(lat) * 1000 if lat else float("nan")
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
            print(f"{p.name:<7} {name:<13} {100 * st.ok / total if total else float('nan'):9.1f}% {p50:8.0f} "
                  f"{p99:8.0f} {total:5d} {st.requests:9d}")
    for p in phases:
        for name, st in p.streams.items():
            if st.fail:
                print(f"{name} failures ({p.name}): " + ", ".join(f"{k}: {v}" for k, v in st.fail.most_common()))
        if p.attacker_status:
            print(f"attacker answers ({p.name}): " + ", ".join(f"{k}: {v}" for k, v in p.attacker_status.most_common()))
        if p.honest_fail:
            print(f"honest failures ({p.name}): " + ", ".join(f"{k}: {v}" for k, v in p.honest_fail.most_common()))


if __name__ == "__main__":
    main()
