"""Strangers are not attackers (issue 16), against real PostgreSQL and real Redis: the owner's
sign-in pass past a spent email budget, budgets that concurrent attempts cannot overrun, cheap
refusals that cannot start an attack, and each request's standing at the hash gate.

The client address comes from X-Forwarded-For (the test client's peer is the trusted proxy).
"""

from __future__ import annotations

import re
import threading

from authsvc.services.core.subjects import client_subjects, email_subject
from tests.support.flows import enroll_totp, register
from tests.support.metrics import metric
from tests.throttle.conftest import WRONG, attempt

NOTICE = "Many failed sign-ins to your account"


def login_pass_from(mail: dict) -> str:
    return re.search(r"^([A-Za-z0-9_-]{20})\r?$", mail["body"], re.M).group(1)


# ---------------------------------------------------------------------------- the owner's way in
def test_owner_on_a_new_phone_gets_in_with_the_pass_from_the_notice(client, user, smtp):
    smtp.clear()
    for i in range(10):  # others spend the email's budget from ten addresses
        assert attempt(client, user["email"], WRONG, f"198.51.{i}.10").status_code == 401
    new_phone = {"X-Forwarded-For": "203.0.113.50", "X-Device-Id": "new-phone"}
    refused = client.post("/v1/login", json={"email": user["email"], "password": user["password"]}, headers=new_phone)
    assert refused.status_code == 429
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == NOTICE)
    login_pass = login_pass_from(mail)

    # an attacker without the pass, or with a made-up one, is still refused
    guessed = client.post("/v1/login", json={"email": user["email"], "password": user["password"],
                                             "login_pass": "A" * 20}, headers=new_phone)
    assert guessed.status_code == 429

    ok = client.post("/v1/login", json={"email": user["email"], "password": user["password"],
                                        "login_pass": login_pass}, headers=new_phone)
    assert ok.status_code == 200, ok.get_json()
    done = client.post("/v1/login/mfa", json={"mfa_token": ok.get_json()["mfa_token"], "method": "recovery_code",
                                              "code": user["recovery_codes"][0]}, headers=new_phone)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["device_token"]  # the new phone is known from now on

    # the pass worked once
    again = client.post("/v1/login", json={"email": user["email"], "password": user["password"],
                                           "login_pass": login_pass}, headers={"X-Forwarded-For": "203.0.113.51"})
    assert again.status_code == 429


def test_a_pass_is_bound_to_its_account_and_dies_after_five_wrong_passwords(client, user, twilio, smtp, db):
    other = register(client, twilio, smtp, phone=None)
    enroll_totp(client, other["enrollment_token"])
    smtp.clear()
    for i in range(10):
        attempt(client, user["email"], WRONG, f"198.51.{i}.10")
        attempt(client, other["email"], WRONG, f"198.51.{i}.11")
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == NOTICE)
    login_pass = login_pass_from(mail)
    ip = {"X-Forwarded-For": "203.0.113.60"}
    # another account's email with this pass: its budget still holds
    assert client.post("/v1/login", json={"email": other["email"], "password": other["password"],
                                          "login_pass": login_pass}, headers=ip).status_code == 429
    for _ in range(5):  # the pass is no way around the password
        assert client.post("/v1/login", json={"email": user["email"], "password": WRONG,
                                              "login_pass": login_pass}, headers=ip).status_code == 401
    assert db.execute("SELECT attempts, used_at IS NOT NULL FROM login_passes WHERE account_id = %s",
                      (user["account_id"],)).fetchone() == (5, True)
    assert client.post("/v1/login", json={"email": user["email"], "password": user["password"],
                                          "login_pass": login_pass}, headers=ip).status_code == 429


def test_the_pass_is_stored_hashed_and_an_unknown_email_gets_no_notice(client, user, smtp, db):
    smtp.clear()
    for i in range(10):
        attempt(client, user["email"], WRONG, f"198.51.{i}.10")
        attempt(client, "nobody@example.com", WRONG, f"198.51.{i}.20")
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == NOTICE)
    login_pass = login_pass_from(mail)
    stored = db.execute("SELECT token_hash FROM login_passes").fetchall()
    assert len(stored) == 1 and login_pass.encode() not in bytes(stored[0][0])
    assert [m["to"] for m in smtp.snapshot() if m["subject"] == NOTICE] == [user["email"]]


# ---------------------------------------------------------------------------- budgets under concurrency
def test_concurrent_attempts_cannot_overrun_an_email_budget(make_app, tsettings, user):
    app = make_app(tsettings.replace(hash_concurrency=4))
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def one(i: int) -> None:
        c = app.test_client()
        start.wait()
        status = attempt(c, user["email"], WRONG, f"198.51.{i}.30").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 20
    # the budget is 10 failures: never more wrong passwords checked than that
    assert statuses.count(401) <= 10 and set(statuses) <= {401, 429}
    assert metric(app, "authsvc_logins_total", step="password", outcome="invalid_credentials") <= 10


def test_cheap_refused_requests_from_one_address_never_start_an_attack(make_app, tsettings):
    app = make_app(tsettings.replace(attack_failures_per_minute=60))
    client = app.test_client()
    for i in range(20):  # the address's whole budget
        assert attempt(client, f"cheap-{i}@example.com", WRONG, "192.0.2.40").status_code == 401
    for i in range(100):  # then refused before hashing, as fast as it can
        assert attempt(client, f"cheap-x{i}@example.com", WRONG, "192.0.2.40").status_code == 429
    throttle = app.extensions["authsvc"].throttle
    assert not throttle.attack_state()["active"]
    assert throttle.attack_state()["this_minute"] + throttle.attack_state()["last_minute"] <= 20


# ---------------------------------------------------------------------------- standings
def test_during_an_attack_failing_clients_stand_behind_clean_strangers(make_app, tsettings, user):
    app = make_app(tsettings.replace(attack_failures_per_minute=3))
    client = app.test_client()
    for i in range(4):  # an attack from one address: its failures make it "failing"
        attempt(client, f"list-{i}@example.com", WRONG, "198.18.0.7")
    assert app.extensions["authsvc"].throttle.attack_state()["active"]
    before = metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="failing")
    assert attempt(client, "list-x@example.com", WRONG, "198.18.0.7").status_code == 401
    assert metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="failing") == before + 1
    clean = metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="stranger")
    assert attempt(client, user["email"], user["password"], "203.0.113.70").status_code == 200
    assert metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="stranger") == clean + 1


def test_outside_an_attack_failures_only_order_strangers(app, client):
    for i in range(3):
        attempt(client, f"typo-{i}@example.com", WRONG, "192.0.2.41")
    throttle = app.extensions["authsvc"].throttle
    subjects = client_subjects("192.0.2.41") + [email_subject("typo-9@example.com", "typo-9@example.com")]
    standing = throttle.admit(subjects, known=False, reserve=False).standing
    assert standing.name == "stranger" and standing.score >= 3  # behind clean strangers, same wait


def test_a_stranger_coming_back_after_retry_after_stands_ahead(app):
    import time

    throttle = app.extensions["authsvc"].throttle
    subjects = client_subjects("203.0.113.80") + [email_subject("back@example.com", "back@example.com")]
    first = throttle.admit(subjects, known=False)
    assert first.standing.name == "stranger"
    throttle.shed(first, 1)  # answered 503 busy, Retry-After: 1
    # no longer in flight, in the same round trip that left the ticket
    assert throttle._counters.get_many([throttle._k("inflight", s) for s in subjects]) == [0] * len(subjects)
    early = throttle.admit(subjects, known=False)
    assert early.standing.name == "stranger"  # came back before its turn: no place kept
    throttle.passed(early)
    time.sleep(0.6)
    back = throttle.admit(subjects, known=False)
    assert back.standing.name == "returning"
    throttle.passed(back)
    other = client_subjects("203.0.113.81") + [email_subject("back@example.com", "back@example.com")]
    assert throttle.admit(other, known=False, reserve=False).standing.name == "stranger"  # its own client only


def test_registration_stands_at_the_gate_as_a_stranger(app, client):
    from tests.support.flows import start_registration

    before = metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="stranger")
    resp, _, _ = start_registration(client)
    assert resp.status_code == 202
    assert metric(app, "authsvc_throttle_decisions_total", decision="allowed", standing="stranger") == before + 1


def test_an_address_past_its_sign_in_budget_cannot_hash_through_registration(client):
    from tests.support.flows import new_email, new_phone

    for i in range(20):
        assert attempt(client, f"reg-list-{i}@example.com", WRONG, "192.0.2.42").status_code == 401
    body = {"email": new_email(), "phone": new_phone(), "password": "correct horse battery staple 42"}
    refused = client.post("/v1/registrations", json=body, headers={"X-Forwarded-For": "192.0.2.42"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # a neighbour registers as usual
    assert client.post("/v1/registrations", json={**body, "email": new_email()},
                       headers={"X-Forwarded-For": "192.0.2.43"}).status_code == 202
