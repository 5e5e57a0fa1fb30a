"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from tests.support.concurrency import race
from tests.support.flows import enroll_webauthn, login_password, new_phone, register, start_registration
from tests.support.messages import extract_code
from tests.support.soft_authenticator import SoftAuthenticator


@pytest.fixture
def garbage_http():
    """A 'webhook receiver' that answers with something that is not HTTP."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"garbage\r\n\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/hook"
    stop.set()
    t.join()
    srv.close()


def test_a_broken_webhook_reply_does_not_stop_sms_delivery(make_app, settings, garbage_http, twilio, smtp, db):
    app = make_app(settings.replace(webhook_url=garbage_http, webhook_secret="x" * 8 + "Kq3vR9sT2wY5zB8nM1pL4"))
    client = app.test_client()
    account = register(client, twilio, smtp)  # emits account.registered to the broken receiver
    deadline = time.monotonic() + 5
    while not db.execute("SELECT count(*) FROM outbox WHERE kind = 'webhook' AND last_error IS NOT NULL").fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post("/v1/password-resets", json={"email": account["email"]}).status_code == 202
    twilio.wait_for(lambda m: m["to"] == account["phone"] and "reset code" in m["body"])
    error = db.execute("SELECT last_error FROM outbox WHERE kind = 'webhook'").fetchone()[0]
    assert error.startswith("DeliveryError")


def test_parallel_resets_send_at_most_three_sms(make_app, settings, twilio, smtp):
    import ipaddress

    app = make_app(settings.replace(rate_limits_enabled=False, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),)))
    account = register(app.test_client(), twilio, smtp)
    twilio.clear()
    # ten clients at once (one client alone gets at most 2 of the 3)
    statuses = race([lambda ip=f"198.51.100.{n + 1}": app.test_client().post(
        "/v1/password-resets", json={"email": account["email"]}, headers={"X-Forwarded-For": ip}).status_code
        for n in range(10)])
    assert statuses == [202] * 10
    time.sleep(0.5)
    assert len([m for m in twilio.snapshot() if "reset code" in m["body"]]) == 3


def test_parallel_registrations_respect_the_per_phone_limit(make_app, settings, db):
    app = make_app(settings.replace(rate_limits_enabled=False), start_outbox=False)
    phone = new_phone()
    statuses = race([lambda: start_registration(app.test_client(), phone=phone)[0].status_code] * 10)
    assert sorted(statuses) == [202] * 5 + [429] * 5
    assert db.execute("SELECT count(*) FROM registrations").fetchone()[0] == 5


def test_known_and_unknown_reset_emails_do_the_same_writes(client, twilio, smtp, db):
    account = register(client, twilio, smtp)
    before = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("outbox", "audit_log", "password_resets")]
    client.post("/v1/password-resets", json={"email": account["email"]})
    mid = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("outbox", "audit_log", "password_resets")]
    client.post("/v1/password-resets", json={"email": "nobody@example.com"})
    after = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("outbox", "audit_log", "password_resets")]
    assert [m - b for m, b in zip(mid, before, strict=True)] == [a - m for a, m in zip(after, mid, strict=True)] == [1, 1, 1]


def test_taken_and_free_registrations_do_the_same_writes(client, twilio, smtp, db):
    owner = register(client, twilio, smtp)
    counts = lambda: [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("outbox", "registrations")]  # noqa: E731
    a = counts()
    start_registration(client, email=owner["email"])
    b = counts()
    start_registration(client)
    c = counts()
    assert [y - x for x, y in zip(a, b, strict=True)] == [y - x for x, y in zip(b, c, strict=True)] == [1, 1]


def test_frozen_account_without_factor_gets_no_enrollment_token(client, twilio, smtp, db):
    account = register(client, twilio, smtp)
    db.execute("UPDATE accounts SET status = 'frozen'")
    twilio.clear()
    body = login_password(client, account).get_json()
    assert body["methods"] == ["sms"]
    sms = twilio.wait_for(lambda m: m["to"] == account["phone"])
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "sms",
                                            "code": extract_code(sms["body"])})
    assert r.status_code == 403 and r.get_json()["code"] == "account_frozen"
    # nor can the registration's enrollment token enroll a factor while frozen
    r = client.post("/v1/factors/totp", json={}, headers={"Authorization": f"Bearer {account['enrollment_token']}"})
    assert r.status_code == 401


def test_copying_user_agent_and_device_id_does_not_make_a_known_device(client, twilio, smtp):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    owner = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)", "X-Device-Id": "owner-phone"}

    def login_with(headers, ip):
        body = client.post("/v1/login", json={"email": account["email"], "password": account["password"]},
                           headers=headers, environ_base={"REMOTE_ADDR": ip}).get_json()
        return client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                                   "credential": key.get(body["webauthn_options"])},
                           headers=headers, environ_base={"REMOTE_ADDR": ip})

    # the owner's device presents its token: no notice, from any network
    assert login_with({**owner, "X-Device-Token": account["device_token"]}, "203.0.113.66").status_code == 200
    time.sleep(0.3)
    assert not [m for m in twilio.snapshot() if "New sign-in" in m["body"]]
    # the same User-Agent and X-Device-Id from the same address, without the token: a new device
    assert login_with(owner, "203.0.113.66").status_code == 200
    twilio.wait_for(lambda m: m["to"] == account["phone"] and "New sign-in" in m["body"])


@pytest.mark.parametrize("weird", ["urn:uuid:12345678-1234-5678-1234-567812345678",
                                   "{12345678-1234-5678-1234-567812345678}",
                                   "12345678123456781234567812345678"])
def test_non_canonical_ids_in_paths_are_4xx(client, weird):
    for path, body in ((f"/v1/registrations/{weird}/verify", {"phone_code": "123456", "email_code": "123456"}),
                       (f"/v1/password-resets/{weird}/sms", {"code": "123456"})):
        r = client.post(path, json=body)
        assert 400 <= r.status_code < 500, (path, r.status_code)


def test_deeply_nested_client_data_is_a_4xx(client, twilio, smtp):
    account = register(client, twilio, smtp)
    nested = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=").decode()  # fits in 64 KiB
    r = client.post("/v1/factors/webauthn", json={"credential": {"id": "x", "rawId": "x", "type": "public-key",
                                                                  "response": {"clientDataJSON": nested}}},
                    headers={"Authorization": f"Bearer {account['enrollment_token']}"})
    assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
