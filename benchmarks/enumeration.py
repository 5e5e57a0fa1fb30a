"""Benchmark: do answers about registered and unknown emails take the same time?

    python benchmarks/enumeration.py [--rounds 60]

For login, password-reset start and registration start, interleaves requests about a
registered email and an unknown one and prints both medians. The contract asks for the same
median latency either way; this prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _harness import bench_app

from tests.support.flows import STRONG_PASSWORD, enroll_totp, new_email, new_phone, register


def timed(call) -> float:
    t = time.perf_counter()
    call()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    with bench_app() as (app, _settings, twilio, smtp):
        client = app.test_client()
        known = register(client, twilio, smtp)
        enroll_totp(client, known["enrollment_token"])
        cases = {
            "login (wrong password)": lambda email: client.post(
                "/v1/login", json={"email": email, "password": "a wrong password here"}),
            "password reset start": lambda email: client.post("/v1/password-resets", json={"email": email}),
            "registration start": lambda email: client.post(
                "/v1/registrations", json={"email": email, "phone": new_phone(), "password": STRONG_PASSWORD}),
        }
        print(f"{'endpoint':26} {'registered':>12} {'unknown':>12}  (median ms, {args.rounds} rounds)")
        for name, call in cases.items():
            call(known["email"]), call(new_email())  # warm up
            a, b = [], []
            for _ in range(args.rounds):
                a.append(timed(lambda call=call: call(known["email"])))
                b.append(timed(lambda call=call: call(new_email())))
            print(f"{name:26} {statistics.median(a):12.2f} {statistics.median(b):12.2f}")


if __name__ == "__main__":
    main()
