"""Registration over HTTP: real PostgreSQL, the real twilio client against a local fake, real SMTP."""

from __future__ import annotations

import time

import pytest

from tests.support.concurrency import race
from tests.support.flows import STRONG_PASSWORD, new_email, new_phone, register, start_registration
from tests.support.messages import extract_code


def _count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _codes(twilio, smtp, phone, email):
    sms = twilio.wait_for(lambda m: m["to"] == phone)
    mail = smtp.wait_for(lambda m: m["to"] == email)
    return extract_code(sms["body"]), extract_code(mail["body"])


def test_register_and_verify_creates_account(client, twilio, smtp, db):
    account = register(client, twilio, smtp)
    assert account["expires_in"] > 0 and len(account["enrollment_token"]) >= 40
    row = db.execute(
        "SELECT email, email_normalized, phone, password_hash, status FROM accounts WHERE id = %s",
        (account["account_id"],),
    ).fetchone()
    assert row[0] == account["email"] and row[2] == account["phone"] and row[4] == "active"
    assert row[3].startswith("$argon2id$") and "m=19456,t=2,p=1" in row[3]
    sms = twilio.snapshot()[0]
    assert sms["from_"] == "+15005550006" and sms["account_sid"] == twilio.account_sid
    # the enrollment token is stored hashed, never in clear
    stored = db.execute("SELECT token_hash FROM enrollment_tokens").fetchone()[0]
    assert account["enrollment_token"].encode() not in bytes(stored)


def test_codes_are_not_stored_in_clear(client, twilio, smtp, db):
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    row = db.execute("SELECT phone_code_mac, email_code_mac FROM registrations").fetchone()
    for stored in row:
        assert phone_code.encode() not in bytes(stored) and email_code.encode() not in bytes(stored)
    # the outbox payload that carried the codes is encrypted, and blanked once delivered
    payloads = [r[0] for r in db.execute("SELECT payload FROM outbox").fetchall()]
    assert all(phone_code not in p and email_code not in p for p in payloads)


def test_registration_can_be_verified_only_once(client, twilio, smtp, db):
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    rid = resp.get_json()["registration_id"]
    body = {"phone_code": phone_code, "email_code": email_code}
    assert client.post(f"/v1/registrations/{rid}/verify", json=body).status_code == 201
    again = client.post(f"/v1/registrations/{rid}/verify", json=body)
    assert again.status_code == 400 and again.get_json()["code"] == "verification_failed"
    assert _count(db, "accounts") == 1


def test_concurrent_verification_succeeds_exactly_once(app, twilio, smtp, db):
    client = app.test_client()
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    rid = resp.get_json()["registration_id"]
    body = {"phone_code": phone_code, "email_code": email_code}
    statuses = race([lambda: app.test_client().post(f"/v1/registrations/{rid}/verify", json=body).status_code] * 6)
    assert sorted(statuses) == [201] + [400] * 5
    assert _count(db, "accounts") == 1 and _count(db, "enrollment_tokens") == 1


def test_five_wrong_answers_kill_the_registration(client, twilio, smtp, db):
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    rid = resp.get_json()["registration_id"]
    wrong = f"{(int(phone_code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": wrong, "email_code": email_code})
        assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": phone_code, "email_code": email_code})
    assert r.status_code == 400
    assert _count(db, "accounts") == 0


def test_both_codes_are_required(client, twilio, smtp, db):
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    rid = resp.get_json()["registration_id"]
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": phone_code, "email_code": phone_code})
    assert r.status_code == 400 or phone_code == email_code
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": email_code, "email_code": email_code})
    assert r.status_code == 400 or phone_code == email_code
    assert _count(db, "accounts") == 0


def test_expired_registration_cannot_be_verified(client, twilio, smtp, db):
    resp, email, phone = start_registration(client)
    phone_code, email_code = _codes(twilio, smtp, phone, email)
    rid = resp.get_json()["registration_id"]
    db.execute("UPDATE registrations SET expires_at = now() - interval '1 second'")
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": phone_code, "email_code": email_code})
    assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"


def test_taken_email_gets_the_same_answer_the_same_sms_and_a_notice(client, twilio, smtp, db):
    owner = register(client, twilio, smtp)
    twilio.clear()
    smtp.clear()
    attacker_phone = new_phone()
    fresh, _, _ = start_registration(client, email=new_email(), phone=new_phone())
    taken, _, _ = start_registration(client, email=owner["email"].upper(), phone=attacker_phone)
    assert taken.status_code == fresh.status_code == 202
    assert taken.headers["Content-Type"] == fresh.headers["Content-Type"]
    assert set(taken.get_json()) == set(fresh.get_json()) == {"registration_id", "expires_in"}
    assert taken.get_json()["expires_in"] == fresh.get_json()["expires_in"]
    notice = smtp.wait_for(lambda m: m["to"] == owner["email"])  # the owner's own address, as registered
    assert "already has an account" in notice["body"]
    with pytest.raises(AssertionError):
        extract_code(notice["body"])  # the notice carries no code
    # the phone in the request gets its code either way (its side effects must not tell a taken
    # email apart), but that code verifies nothing
    twilio.wait_for(lambda m: m["to"] == attacker_phone and "verification code" in m["body"])
    rid = taken.get_json()["registration_id"]
    for guess in ("000000", "123456"):
        r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": guess, "email_code": guess})
        assert r.status_code == 400
    assert _count(db, "accounts") == 1


@pytest.mark.parametrize("variant", ["ALICE@example.com", " alice@EXAMPLE.com ", "ａｌｉｃｅ@example.com"])
def test_emails_that_normalise_alike_cannot_make_two_accounts(client, twilio, smtp, db, variant):
    register(client, twilio, smtp, email="alice@example.com")
    resp, _, _ = start_registration(client, email=variant)
    assert resp.status_code == 202
    rid = resp.get_json()["registration_id"]
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": "000000", "email_code": "000000"})
    assert r.status_code == 400
    assert _count(db, "accounts") == 1


def test_pending_registration_never_blocks_the_real_owner(client, twilio, smtp, db):
    email = new_email()
    squatter, _, phone = start_registration(client, email=email)  # never verified
    assert squatter.status_code == 202
    _codes(twilio, smtp, phone, email)
    twilio.clear()
    smtp.clear()
    account = register(client, twilio, smtp, email=email)
    assert account["account_id"]


@pytest.mark.parametrize(
    "password, reason",
    [
        ("short1!", "too short"),
        ("x" * 129, "too long"),
        ("password123", "common"),
        ("iloveyou1234", "common"),
        ("my alice password", "contains the email local part"),
    ],
)
def test_weak_passwords_are_refused_and_nothing_is_stored(client, twilio, db, password, reason):
    r = client.post(
        "/v1/registrations", json={"email": "alice@example.com", "phone": new_phone(), "password": password}
    )
    assert r.status_code == 400, reason
    body = r.get_json()
    assert body["code"] == "weak_password" and r.headers["Content-Type"] == "application/problem+json"
    assert password not in r.get_data(as_text=True)
    assert _count(db, "registrations") == 0 and _count(db, "outbox") == 0


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"email": "a@example.com", "phone": "+819012345678", "password": STRONG_PASSWORD, "role": "admin"}, "role"),
        ({"email": "a@example.com", "phone": "+819012345678", "password": STRONG_PASSWORD, "status": "active"}, "status"),
        ({"email": ["a@example.com"], "phone": "+819012345678", "password": STRONG_PASSWORD}, "email"),
        ({"email": "a@example.com", "phone": 819012345678, "password": STRONG_PASSWORD}, "phone"),
        ({"email": "a@example.com", "phone": "+819012345678"}, "password"),
        ({"email": "a@example.com", "phone": "+819012345678", "password": None}, "password"),
    ],
)
def test_schema_violations_are_400_with_field_errors(client, db, payload, field):
    r = client.post("/v1/registrations", json=payload)
    assert r.status_code == 400
    body = r.get_json()
    assert body["code"] == "invalid_request"
    assert field in [e["field"] for e in body["errors"]]
    assert _count(db, "registrations") == 0


@pytest.mark.parametrize("phone", ["09012345678", "+81 90 1234 5678", "+1", "+999999999999", "+８１９０１２３４５６７８"])
def test_phone_must_be_e164(client, db, phone):
    r = client.post("/v1/registrations", json={"email": "a@example.com", "phone": phone, "password": STRONG_PASSWORD})
    assert r.status_code == 400 and [e["field"] for e in r.get_json()["errors"]] == ["phone"]
    assert _count(db, "registrations") == 0


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com"])
def test_email_must_be_valid(client, db, email):
    r = client.post("/v1/registrations", json={"email": email, "phone": "+819012345678", "password": STRONG_PASSWORD})
    assert r.status_code == 400 and r.get_json()["code"] == "invalid_request"
    assert _count(db, "registrations") == 0


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        (b'{"email": "a@example.com", "phone": "+819012345678", "password": "abc\\u0000defghijk"}', "application/json", 400),
        (b'{"email": "a@example.com\x00", "phone": "+819012345678", "password": "x"}', "application/json", 400),
        (b'{"email": "\xff\xfe@example.com", "phone": "+819012345678", "password": "x"}', "application/json", 400),
        (b'{"email": "a@example.com", "email": "b@example.com", "phone": "+1", "password": "x"}', "application/json", 400),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "application/json", 400),
        (b"{not json", "application/json", 400),
        (b'{"email": NaN}', "application/json", 400),
        (b"email=a@example.com", "application/x-www-form-urlencoded", 415),
        (b'{"email": "' + b"a" * (70 * 1024) + b'"}', "application/json", 413),
    ],
)
def test_malformed_bodies_are_refused_before_any_work(client, db, raw, content_type, status):
    r = client.post("/v1/registrations", data=raw, content_type=content_type)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "code", "detail"} <= set(r.get_json())
    assert _count(db, "registrations") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"phone_code": 123456, "email_code": "123456"},
        {"phone_code": ["123456"], "email_code": "123456"},
        {"phone_code": "12345", "email_code": "123456"},
        {"phone_code": "１２３４５６", "email_code": "123456"},
        {"phone_code": "123456", "email_code": "123456", "extra": 1},
    ],
)
def test_verify_rejects_malformed_codes_without_counting(client, twilio, smtp, db, body):
    resp, email, phone = start_registration(client)
    rid = resp.get_json()["registration_id"]
    r = client.post(f"/v1/registrations/{rid}/verify", json=body)
    assert r.status_code == 400 and r.get_json()["code"] == "invalid_request"
    assert db.execute("SELECT failed_attempts FROM registrations").fetchone()[0] == 0


def test_verify_of_unknown_or_malformed_id_fails_cleanly(client):
    body = {"phone_code": "123456", "email_code": "123456"}
    for rid in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "%00"):
        r = client.post(f"/v1/registrations/{rid}/verify", json=body)
        assert r.status_code in (400, 404) and r.headers["Content-Type"] == "application/problem+json"


def test_sms_per_phone_is_limited(make_app, settings, twilio, smtp, db):
    client = make_app(settings.replace(rate_limits_enabled=False)).test_client()  # per-phone, not per-IP
    phone = new_phone()
    statuses = [start_registration(client, phone=phone)[0].status_code for _ in range(6)]
    assert statuses[:5] == [202] * 5 and statuses[5] == 429
    assert _count(db, "registrations") == 5
    # the limit answers alike for a taken email: it must not reveal registered emails
    owner = register(client, twilio, smtp)
    taken = start_registration(client, phone=phone, email=owner["email"])[0]
    assert taken.status_code == 429


def test_per_ip_rate_limit_answers_429_with_retry_after(client):
    statuses = []
    for _ in range(7):
        r = client.post("/v1/registrations", json={"email": "x", "phone": "y", "password": "z"})
        statuses.append(r.status_code)
    assert statuses[-1] == 429
    assert r.get_json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


def test_sms_outage_does_not_lose_the_code(client, twilio, smtp, db, app):
    twilio.fail_next(1, status=500)
    resp, email, phone = start_registration(client)
    assert resp.status_code == 202
    smtp.wait_for(lambda m: m["to"] == email)
    # the failed SMS stays in the outbox and goes out on the next pass
    deadline = time.monotonic() + 5
    while db.execute("SELECT count(*) FROM outbox WHERE last_error IS NOT NULL").fetchone()[0] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    db.execute("UPDATE outbox SET available_at = now() WHERE delivered_at IS NULL")
    app.extensions["authsvc"].outbox.deliver_due()
    assert twilio.wait_for(lambda m: m["to"] == phone)


def app_metrics(client) -> str:
    body, _ = client.application.extensions["authsvc"].metrics.render()
    return body.decode()


def test_health_readiness_and_metrics(client, make_app, settings, pg_admin_url):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/v1/registrations", json={"email": "x"})
    assert client.get("/metrics").status_code == 404  # metrics have their own listener
    metrics = app_metrics(client)
    assert 'authsvc_http_requests_total{endpoint="/v1/registrations",method="POST",status="400"} 1.0' in metrics
    assert "authsvc_outbox_depth" in metrics
    # a database whose migrations are behind is not ready
    import uuid

    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"authsvc_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        behind = make_app(settings.replace(database_url=make_conninfo(pg_admin_url, dbname=name)), start_outbox=False)
        r = behind.test_client().get("/readyz")
        assert r.status_code == 503 and "pending" in r.get_json()["detail"]
        behind.extensions["authsvc"].close()
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_unknown_route_and_method_are_problems(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    r = client.get("/v1/registrations")
    assert r.status_code == 405 and r.headers["Content-Type"] == "application/problem+json"


def test_retry_after_only_on_429(client):
    r = client.post("/v1/registrations", json={"email": "x", "phone": "y", "password": "z"})
    assert "Retry-After" not in r.headers


def test_readyz_is_503_while_the_database_is_down(make_app, settings):
    down = make_app(settings.replace(database_url="postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1"),
                    start_outbox=False)
    r = down.test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json()["status"] == "unavailable"
    assert down.test_client().get("/healthz").status_code == 200


def test_rate_limit_counters_are_shared_through_redis(make_app, settings):
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    import uuid

    shared = settings.replace(redis_url=url, rate_limit_prefix=f"authsvc-test-{uuid.uuid4().hex[:8]}")
    first, second = make_app(shared, start_outbox=False), make_app(shared, start_outbox=False)
    body = {"email": "x", "phone": "y", "password": "z"}
    statuses = [first.test_client().post("/v1/registrations", json=body).status_code for _ in range(5)]
    assert statuses == [400] * 5
    # a second process (another worker or replica) sees the same counters
    r = second.test_client().post("/v1/registrations", json=body)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
