"""Benchmark: argon2id hash/verify with the configured parameters, and full-login throughput
(password + TOTP, over the WSGI app, against a real PostgreSQL) measured in the same run.

    python benchmarks/login.py [--accounts 40] [--verifies 40]

Uses AUTHSVC_DATABASE_URL when set (a scratch database is created and dropped in it), else an
embedded PostgreSQL. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from _harness import bench_app

from authsvc.config import Settings
from authsvc.security.passwords import PasswordHasher
from tests.support.flows import enroll_totp, register


def argon2_figures(settings: Settings, n: int) -> dict:
    hasher = PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism)
    password = "correct horse battery staple 42"
    hashes, verifies = [], []
    stored = hasher.hash(password)
    for _ in range(n):
        t = time.perf_counter()
        hasher.hash(password)
        hashes.append(time.perf_counter() - t)
        t = time.perf_counter()
        hasher.verify(stored, password)
        verifies.append(time.perf_counter() - t)
    return {
        "hash_ms": statistics.median(hashes) * 1000,
        "verify_ms": statistics.median(verifies) * 1000,
        "verify_per_s": 1 / statistics.median(verifies),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=40)
    ap.add_argument("--verifies", type=int, default=40)
    args = ap.parse_args()

    with bench_app() as (app, settings, twilio, smtp):
        client = app.test_client()
        accounts = []
        for _ in range(args.accounts):
            acct = register(client, twilio, smtp)
            accounts.append({**acct, "totp": enroll_totp(client, acct["enrollment_token"])["totp"]})

        a2 = argon2_figures(settings, args.verifies)

        def login(acct: dict) -> float:
            c = app.test_client()
            t = time.perf_counter()
            r = c.post("/v1/login", json={"email": acct["email"], "password": acct["password"]})
            m = c.post("/v1/login/mfa", json={"mfa_token": r.get_json()["mfa_token"], "method": "totp",
                                               "code": acct["totp"].at(time.time() + 30)})
            assert m.status_code == 200, m.get_json()
            return time.perf_counter() - t

        results = {}
        half = len(accounts) // 2
        for label, workers, batch in (("1 thread", 1, accounts[:half]), ("2 threads", 2, accounts[half:])):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                lat = list(pool.map(login, batch))
            results[label] = (len(batch) / (time.perf_counter() - t0), statistics.median(lat) * 1000)

    print(f"argon2id m={settings.argon2_memory_cost} KiB t={settings.argon2_time_cost} p={settings.argon2_parallelism}")
    print(f"  hash   median {a2['hash_ms']:7.1f} ms")
    print(f"  verify median {a2['verify_ms']:7.1f} ms   -> {a2['verify_per_s']:6.1f} verifies/s (1 core)")
    for label, (per_s, ms) in results.items():
        print(f"full login (password + TOTP), {label:9}: {per_s:6.1f} logins/s, median {ms:6.1f} ms")
    print(f"full login / raw verify (1 thread): {results['1 thread'][0] / a2['verify_per_s']:.2f}")


if __name__ == "__main__":
    main()
