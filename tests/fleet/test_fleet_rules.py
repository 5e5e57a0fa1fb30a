"""Every rule holds across the fleet as in one process (README, "A fleet of replicas"),
shown black-box on three replicas (gunicorn, 2 workers each) on one database and one Redis:
shared failure budgets, revocation everywhere at once, one-time things exactly once whichever
replicas race, one message per registration with six senders, an intact audit chain after
concurrent writes, and `db upgrade` from several processes at once."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.faults.service import ROOT
from tests.fleet.conftest import random_ip
from tests.fleet.flows import client_revoked_everywhere, introspect, new_account, new_backend, redeem, sign_in, step_up
from tests.support.concurrency import race
from tests.support.flows import STRONG_PASSWORD, new_email, new_phone

WRONG = "not the password at all 1"


def _first_429(clients, email: str) -> int:
    """Wrong passwords for ``email`` (one client address), the clients taking turns: the
    attempt that first answers 429."""
    turns = itertools.cycle(clients)
    for n in range(1, 40):
        r = next(turns).post("/v1/login", json={"email": email, "password": WRONG})
        if r.status_code == 429:
            return n
        assert r.status_code == 401, r
    raise AssertionError("no 429 in 40 attempts")


def test_the_failure_budget_is_shared(fleet):
    one = _first_429(fleet.clients()[:1], new_email())
    three = _first_429(fleet.clients(), new_email())
    assert one == three == 11  # AUTHSVC_THROTTLE_EMAIL_FAILURES = 10: the 11th waits, wherever it lands


def test_a_revoked_session_stops_on_every_replica_at_once(fleet, twilio, smtp):
    c = fleet.clients()
    account = new_account(c[0], twilio, smtp)
    keep, doomed = sign_in(c[0], account), sign_in(c[1], account)
    _, backend = new_backend(fleet)
    for client in c:
        assert introspect(client, backend, doomed["access_token"]).get_json()["active"] is True
        assert client.get("/v1/account", headers={"Authorization": f"Bearer {doomed['access_token']}"}).status_code == 200
    sessions = c[2].get("/v1/sessions", headers={"Authorization": f"Bearer {keep['access_token']}"}).get_json()
    other = next(s["session_id"] for s in sessions if not s["current"])
    assert c[2].delete(f"/v1/sessions/{other}",
                       headers={"Authorization": f"Bearer {keep['access_token']}"}).status_code == 204
    for client in c:  # at once: no waiting, on every replica
        assert introspect(client, backend, doomed["access_token"]).get_json() == {"active": False}
        assert client.get("/v1/account", headers={"Authorization": f"Bearer {doomed['access_token']}"}).status_code == 401
        assert client.post("/v1/token/refresh", json={"refresh_token": doomed["refresh_token"]}).status_code == 401


def test_a_revoked_client_stops_on_every_replica_within_2_s(fleet, twilio, smtp):
    took = client_revoked_everywhere(fleet, twilio, smtp)
    print(f"client refused by all 3 replicas {took:.2f} s after `clients revoke` returned")


def test_one_time_things_work_once_whichever_replicas_race(fleet, twilio, smtp):
    c = fleet.clients()
    account = new_account(c[0], twilio, smtp)
    # an mfa_token, answered on three replicas at once
    r = c[0].post("/v1/login", json={"email": account["email"], "password": account["password"]})
    body = r.get_json()
    answers = [account["key"].get(body["webauthn_options"]) for _ in c]
    statuses = race([lambda cl=cl, a=a: cl.post("/v1/login/mfa", json={
        "mfa_token": body["mfa_token"], "method": "webauthn", "credential": a}).status_code
        for cl, a in zip(c, answers, strict=True)])
    assert sorted(statuses) == [200, 401, 401], statuses
    # a refresh token, used on three replicas at once
    tokens = sign_in(c[1], account)
    results = race([lambda cl=cl: cl.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]})
                    for cl in c])
    assert sorted(r.status_code for r in results) == [200, 401, 401], results
    # a step-up token, redeemed by backends on three replicas at once
    _, backend = new_backend(fleet)
    fresh = sign_in(c[2], account)
    done = step_up(c[2], fresh["access_token"], account)
    statuses = race([lambda cl=cl: redeem(cl, backend, done["step_up_token"]).status_code for cl in c])
    assert sorted(statuses) == [200, 409, 409], statuses


def test_one_message_per_registration_with_six_senders(fleet, twilio, smtp):
    """Every replica's two workers run an outbox sender: each registration's SMS and email
    leave exactly once."""
    c = fleet.clients()
    people = [(new_email(), new_phone()) for _ in range(6)]
    started = race([lambda i=i, e=e, p=p: c[i % 3].post(
        "/v1/registrations", json={"email": e, "phone": p, "password": STRONG_PASSWORD},
        headers={"X-Forwarded-For": random_ip()}).status_code for i, (e, p) in enumerate(people)])
    assert started == [202] * 6, started
    for email, phone in people:
        twilio.wait_for(lambda m, phone=phone: m["to"] == phone, timeout=30)
        smtp.wait_for(lambda m, email=email: m["to"] == email, timeout=30)
    time.sleep(2.0)  # a duplicate would come from another sender about now
    sms, mail = twilio.snapshot(), smtp.snapshot()
    for email, phone in people:
        assert sum(m["to"] == phone for m in sms) == 1, phone
        assert sum(m["to"] == email for m in mail) == 1, email


def test_audit_verify_after_concurrent_writes_on_every_replica(fleet, twilio, smtp):
    c = fleet.clients()
    accounts = [new_account(c[i], twilio, smtp) for i in range(3)]
    sessions = [sign_in(c[i], a) for i, a in enumerate(accounts)]
    failures: list[str] = []

    def writes(i: int) -> None:
        auth = {"Authorization": f"Bearer {sessions[i]['access_token']}"}
        for n in range(6):
            r = c[(i + n) % 3].patch("/v1/account", json={"locale": "ja" if n % 2 else "en"}, headers=auth)
            if r.status_code != 200:
                failures.append(repr(r))
        for n in range(2):
            try:
                sign_in(c[(i + n + 1) % 3], accounts[i])
            except AssertionError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=writes, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    out = fleet.cli("audit", "verify")
    assert "audit log intact" in out, out


def test_db_upgrade_from_several_processes_at_once(pg_admin_url):
    name = f"authsvc_upgrade_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_admin_url, dbname=name)
    try:
        env = {"AUTHSVC_DATABASE_URL": url, "AUTHSVC_MIGRATIONS_DIR": str(ROOT / "migrations"),
               "PATH": "/usr/bin:/bin"}
        procs = [subprocess.Popen([sys.executable, "-m", "authsvc.cli", "db", "upgrade"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        files = sorted(p.stem for p in Path(ROOT / "migrations").glob("*.sql"))
        applied_by = [sum(f"applied {f}" in out.splitlines() for out in outputs) for f in files]
        assert applied_by == [1] * len(files), list(zip(files, applied_by, strict=True))  # each by exactly one process
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(files)
        status = subprocess.run([sys.executable, "-m", "authsvc.cli", "db", "status"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
