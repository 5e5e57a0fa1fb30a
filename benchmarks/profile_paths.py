"""Profile the login and introspection paths in-process (cProfile over the WSGI app, real
PostgreSQL) and count database round trips per request.

    python benchmarks/profile_paths.py [--introspections 2000] [--logins 30] [--top 25]

Prints, per path: statements and transactions per request, mean CPU time per request, and the
functions with the most own time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import pstats
import time

import psycopg
from _harness import bench_app

from tests.support.flows import enroll_totp, register

_counts = {"statements": 0}


def _count_statements() -> None:
    real = psycopg.Connection.execute

    def execute(self, query, params=None, **kw):  # type: ignore[no-untyped-def]
        _counts["statements"] += 1
        return real(self, query, params, **kw)

    psycopg.Connection.execute = execute  # type: ignore[method-assign]


def profile(label: str, n: int, call, top: int) -> None:
    _counts["statements"] = 0
    prof = cProfile.Profile()
    t, cpu = time.perf_counter(), time.process_time()
    prof.enable()
    for i in range(n):
        call(i)
    prof.disable()
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"\n== {label}: {n} requests, {wall / n * 1000:.2f} ms wall and {cpu / n * 1000:.2f} ms CPU per request"
          f" (this process), {_counts['statements'] / n:.1f} SQL statements per request"
          " (each transaction adds BEGIN and COMMIT round trips)")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--introspections", type=int, default=2000)
    ap.add_argument("--logins", type=int, default=30)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with bench_app() as (app, settings, twilio, smtp):
        client = app.test_client()
        accounts = []
        for _ in range(args.logins + 1):
            acct = register(client, twilio, smtp)
            accounts.append({**acct, "totp": enroll_totp(client, acct["enrollment_token"])["totp"]})
        container = app.extensions["authsvc"]
        client_id, secret = container.clients.create("bench", operator="bench", reason="benchmark")
        basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

        def login(i: int) -> str:
            acct = accounts[i]
            known = {"X-Device-Token": acct["device_token"]}  # a returning user's device
            r = client.post("/v1/login", json={"email": acct["email"], "password": acct["password"]}, headers=known)
            m = client.post("/v1/login/mfa", json={"mfa_token": r.get_json()["mfa_token"], "method": "totp",
                                                    "code": acct["totp"].at(time.time() + 30)}, headers=known)
            assert m.status_code == 200, m.get_json()
            return m.get_json()["access_token"]

        token = login(args.logins)
        _count_statements()
        profile("full login (password + TOTP)", args.logins, login, args.top)

        def introspect(_: int) -> None:
            r = client.post("/v1/introspect", json={"token": token}, headers={"Authorization": basic})
            assert r.status_code == 200 and r.get_json()["active"], r.get_json()

        introspect(0)
        profile("introspection", args.introspections, introspect, args.top)


if __name__ == "__main__":
    main()
