"""Benchmark: what the SMS caps cost per SMS-sending request, as the last hour fills up.

    python benchmarks/sms_caps.py [--rounds 200] [--fill 0,1000,10000,100000] [--cap 1000]

Counting is done in PostgreSQL with a row lock per cap scope and counters per minute
(services/core/sms_policy.py, migration 0071). For each number of SMS already sent in the last hour,
prints the median and p99 time of one ``SmsPolicy.permit`` transaction (one statement: the
scopes' locks, the six sums of at most 61 counters, the insert or the refusal; then commit) and
how many such transactions one thread completes per second. The cost grows with neither the
caps nor the traffic. Prints figures, asserts nothing. Concurrent decisions: benchmarks/fleet.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from _harness import bench_app

from authsvc.config import Settings
from tests.support.flows import new_phone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--fill", default="0,1000,10000,100000")
    ap.add_argument("--cap", type=int, default=1000, help="AUTHSVC_SMS_HOURLY_CAP (and the country cap)")
    args = ap.parse_args()
    with bench_app() as (app, settings, _twilio, _smtp):
        container = app.extensions["authsvc"]
        container.outbox.stop()
        defaults = Settings()  # the set-up app's lifted caps are not what is measured
        ap_caps = settings.replace(sms_hourly_cap=args.cap, sms_country_hourly_cap=args.cap,
                                   sms_client_hourly_cap=defaults.sms_client_hourly_cap,
                                   sms_network_hourly_cap=defaults.sms_network_hourly_cap)
        policy = container.sms.__class__(settings=ap_caps, store=container.store, outbox=container.outbox,
                                         metrics=container.metrics)
        print(f"global and country cap {args.cap}/hour (past it each request is a refusal, counted alike)")
        print(f"{'sent last hour':>15} {'median ms':>10} {'p99 ms':>8} {'permits/s (1 thread)':>21}")
        filled = 0
        for target in (int(x) for x in args.fill.split(",")):
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO sms_sends (purpose, phone, country, client_key, network_key, created_at) "
                    "SELECT 'bench', '+8190' || lpad((i %% 100000000)::text, 8, '0'), 'JP', "
                    "       '198.51.100.' || (i %% 250), '198.51.100.0/24', now() - random() * interval '50 minutes' "
                    "  FROM generate_series(%s::int, %s::int) AS i", (filled, target - 1))
                # the counters the decision reads (migration 0071), rebuilt from the filled hour
                conn.execute("DELETE FROM sms_cap_counts")
                conn.execute(
                    "INSERT INTO sms_cap_counts (scope, minute, sent) "
                    "SELECT scope, date_trunc('minute', created_at), count(*) FROM ("
                    "  SELECT created_at, unnest(ARRAY['total:*', 'country:' || country, 'number:' || phone, "
                    "         'account:' || account_id::text, 'client:' || client_key, 'network:' || network_key]) "
                    "         AS scope FROM sms_sends) s WHERE scope IS NOT NULL GROUP BY 1, 2")
                conn.execute("INSERT INTO sms_cap_scopes (scope) SELECT DISTINCT scope FROM sms_cap_counts "
                             "ON CONFLICT DO NOTHING")
                conn.execute("ANALYZE sms_sends")
                conn.execute("ANALYZE sms_cap_counts")
            filled = max(filled, target)
            times = []
            for i in range(args.rounds):
                t = time.perf_counter()
                with container.store.transaction() as tx:
                    policy.permit(tx, to=new_phone(), purpose="bench", ip=f"203.0.113.{i % 250}")
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            median = statistics.median(times)
            p99 = times[int(len(times) * 0.99) - 1]
            print(f"{target:>15} {median:>10.2f} {p99:>8.2f} {1000 / statistics.mean(times):>21.0f}")


if __name__ == "__main__":
    main()
