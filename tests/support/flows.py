"""Multi-step flows over HTTP, shared by the tests."""

from __future__ import annotations

import secrets

from tests.support.messages import extract_code

STRONG_PASSWORD = "correct horse battery staple 42"


def new_email() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


def new_phone() -> str:
    # Japanese mobile numbers: +81 90 xxxx xxxx
    return "+8190" + str(1 + secrets.randbelow(9)) + "".join(str(secrets.randbelow(10)) for _ in range(7))


def start_registration(client, *, email=None, phone=None, password=STRONG_PASSWORD):
    email = email or new_email()
    phone = phone or new_phone()
    resp = client.post("/v1/registrations", json={"email": email, "phone": phone, "password": password})
    return resp, email, phone


def register(client, twilio, smtp, *, email=None, phone=None, password=STRONG_PASSWORD) -> dict:
    """Register and verify an account; returns the 201 body plus email, phone, password."""
    resp, email, phone = start_registration(client, email=email, phone=phone, password=password)
    assert resp.status_code == 202, resp.get_json()
    sms = twilio.wait_for(lambda m: m["to"] == phone)
    mail = smtp.wait_for(lambda m: m["to"] == email)
    rid = resp.get_json()["registration_id"]
    verify = client.post(
        f"/v1/registrations/{rid}/verify",
        json={"phone_code": extract_code(sms["body"]), "email_code": extract_code(mail["body"])},
    )
    assert verify.status_code == 201, verify.get_json()
    return {**verify.get_json(), "email": email, "phone": phone, "password": password}


def enroll_totp(client, token: str) -> dict:
    """Enroll and confirm a TOTP factor with an independent client (pyotp); returns
    ``{factor_id, secret, recovery_codes?, totp}``."""
    import pyotp

    r = client.post("/v1/factors/totp", json={"name": "phone"}, headers=bearer(token))
    assert r.status_code == 201, r.get_json()
    begun = r.get_json()
    totp = pyotp.TOTP(begun["secret"])
    c = client.post(
        f"/v1/factors/totp/{begun['factor_id']}/confirm", json={"code": totp.now()}, headers=bearer(token)
    )
    assert c.status_code == 200, c.get_json()
    return {**c.get_json(), "secret": begun["secret"], "totp": totp}


def enroll_webauthn(client, token: str, authenticator, *, name="key", headers=None) -> dict:
    h = {**bearer(token), **(headers or {})}
    r = client.post("/v1/factors/webauthn/options", json={}, headers=h)
    assert r.status_code == 200, r.get_json()
    credential = authenticator.create(r.get_json()["options"])
    c = client.post("/v1/factors/webauthn", json={"credential": credential, "name": name}, headers=bearer(token))
    assert c.status_code == 201, c.get_json()
    return c.get_json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login_password(client, account: dict, **headers):
    return client.post(
        "/v1/login", json={"email": account["email"], "password": account["password"]}, headers=headers
    )
