"""Payment exemptions from step-up: low value (per currency, cumulative amount and count since
the last full step-up), trusted payees, recurring series; exactly once under concurrency,
suspended by a new device, a recent reset, a freeze or an attack, and audited."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from authsvc.config import ConfigError, LowValueCap, Settings, parse_low_value_caps
from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_webauthn, login_password, register
from tests.support.messages import extract_code
from tests.support.soft_authenticator import SoftAuthenticator

JPY = LowValueCap("JPY", Decimal(3000), Decimal(10000), 5)
EUR = LowValueCap("EUR", Decimal(30), Decimal(100), 5)


def pay(amount: str, currency: str = "JPY", payee: str = "coffee-shop") -> dict:
    return {"amount": amount, "currency": currency, "payee": payee}


@pytest.fixture
def exempt_settings(settings):
    return settings.replace(low_value_exemptions=(JPY, EUR), trusted_payee_exemption=True,
                            recurring_exemption=True)


@pytest.fixture
def app(make_app, exempt_settings):
    return make_app(exempt_settings)


def sign_in(client, account, key, **headers) -> dict:
    body = login_password(client, account, **headers).get_json()
    m = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": key.get(body["webauthn_options"])}, headers=headers)
    assert m.status_code == 200, m.get_json()
    return m.get_json()


def age_devices(db, account_id: str, days: int = 30) -> None:
    """The account's devices have been known for ``days`` (a device is new for 7 days)."""
    db.execute("UPDATE device_tokens SET created_at = now() - make_interval(days => %s) WHERE account_id = %s",
               (days, account_id))


@pytest.fixture
def user(client, twilio, smtp, db):
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    tokens = sign_in(client, account, key, **{"X-Device-Token": account["device_token"]})
    age_devices(db, account["account_id"])
    return {**account, "key": key, "tokens": tokens, "auth": bearer(tokens["access_token"])}


@pytest.fixture
def backend(app):
    client_id, secret = app.extensions["authsvc"].clients.create("payments", operator="test", reason="test")
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def ask(client, user, transaction, **extra):
    r = client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": transaction, **extra},
                    headers=user["auth"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def full_step_up(client, user, ch, action_credential=None) -> dict:
    v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": user["key"].get(ch["webauthn_options"])},
                    headers=user["auth"])
    assert v.status_code == 200, v.get_json()
    return v.get_json()


def redeem(client, backend, token, transaction):
    return client.post("/v1/step-up/redeem", json={"step_up_token": token, "action": "payment.authorize",
                                                   "transaction": transaction}, headers=backend)


def exempted(db) -> list[dict]:
    return [r[0] for r in db.execute(
        "SELECT detail FROM audit_log WHERE action = 'step_up.exempted' ORDER BY id").fetchall()]


# ---------------------------------------------------------------------------- configuration
def test_exemptions_are_off_by_default(make_app, settings, twilio, smtp, db):
    client = make_app(settings).test_client()
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    tokens = sign_in(client, account, key, **{"X-Device-Token": account["device_token"]})
    age_devices(db, account["account_id"])
    r = client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": pay("1")},
                    headers=bearer(tokens["access_token"]))
    assert r.status_code == 201 and "challenge_id" in r.get_json() and "exempt" not in r.get_json()


def test_configuration_is_parsed_and_checked():
    assert parse_low_value_caps("JPY:3000:10000:5, EUR:30:100:5") == (JPY, EUR)
    env = {"AUTHSVC_ENCRYPTION_KEY": "k1:" + base64.b64encode(bytes(range(32))).decode(),
           "AUTHSVC_LOW_VALUE_EXEMPTION": "JPY:3000:10000:5", "AUTHSVC_TRUSTED_PAYEE_EXEMPTION": "true"}
    s = Settings.from_env(env, dev=True, database_only=True)
    assert s.low_value_exemptions == (JPY,) and s.trusted_payee_exemption and not s.recurring_exemption
    for bad in ("JPY:3000:10000", "jpy:1:2:3", "JPY:3000:1000:5", "JPY:0:10:5", "JPY:1:2:0", "JPY:x:2:1",
                "JPY:1:2:3,JPY:1:2:3", "JPY:NaN:NaN:1"):
        with pytest.raises(ConfigError):
            parse_low_value_caps(bad)
    with pytest.raises(ConfigError, match="RECURRING_EXEMPTION"):
        Settings.from_env({**env, "AUTHSVC_RECURRING_EXEMPTION": "maybe"}, dev=True)


# ---------------------------------------------------------------------------- low value
def test_low_value_payment_is_exempt_and_its_token_tells_the_truth(client, user, backend, db):
    out = ask(client, user, pay("1200"))
    assert out["exempt"] == "low_value" and "challenge_id" not in out
    assert out["amr"] == [] and out["acr"] == user["tokens"]["acr"] == "aal3"
    assert set(out) == {"exempt", "step_up_token", "expires_in", "acr", "amr", "transaction_hash"}
    # bound to exactly this payment, like any step-up token
    r = redeem(client, backend, out["step_up_token"], pay("1201"))
    assert r.status_code == 409 and r.get_json()["code"] == "transaction_mismatch"
    r = redeem(client, backend, out["step_up_token"], pay("1200.00"))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["exemption"] == "low_value" and body["amr"] == [] and "mfa" not in body["amr"]
    assert redeem(client, backend, out["step_up_token"], pay("1200")).get_json()["code"] == "already_redeemed"
    [audited] = exempted(db)
    assert audited["exemption"] == "low_value" and audited["cumulative"] == "1200" and audited["count"] == 1
    assert audited["transaction_hash"] == out["transaction_hash"]
    redeemed = db.execute("SELECT detail FROM audit_log WHERE action = 'step_up.redeemed'").fetchone()[0]
    assert redeemed["exemption"] == "low_value"


def test_a_full_step_up_redeems_with_no_exemption(client, user, backend):
    ch = ask(client, user, pay("5000"))  # above the per-payment cap
    assert "challenge_id" in ch
    done = full_step_up(client, user, ch)
    r = redeem(client, backend, done["step_up_token"], pay("5000"))
    assert r.get_json()["exemption"] is None and "mfa" in r.get_json()["amr"]


def test_cumulative_amount_and_count_since_the_last_full_step_up(client, user, db):
    assert [ask(client, user, pay("3000")).get("exempt") for _ in range(3)] == ["low_value"] * 3  # 9000
    over = ask(client, user, pay("1001"))  # 10001 > 10000
    assert "exempt" not in over
    assert ask(client, user, pay("1000"))["exempt"] == "low_value"  # exactly 10000
    assert "exempt" not in ask(client, user, pay("1"))
    # other currencies count apart; the count cap is 5, this one included
    assert [ask(client, user, pay("1", "EUR")).get("exempt") for _ in range(6)] == ["low_value"] * 5 + [None]
    assert "exempt" not in ask(client, user, pay("31", "EUR"))  # above the per-payment cap
    assert "exempt" not in ask(client, user, pay("1", "USD"))  # no cap for USD: never exempt
    # a full step-up starts every currency again from zero
    full_step_up(client, user, over)
    assert ask(client, user, pay("3000"))["exempt"] == "low_value"
    assert ask(client, user, pay("1", "EUR"))["exempt"] == "low_value"
    rows = dict(db.execute("SELECT currency, count FROM payment_exemption_counters").fetchall())
    assert rows == {"JPY": 1, "EUR": 1}


@pytest.mark.parametrize("amount, cap", [("3000", 3), ("1", 5)])
def test_twenty_racing_payments_never_exceed_a_cap(app, user, db, amount, cap):
    """3000 yen x 20 at once: only 3 fit under 10000; 1 yen x 20 at once: only 5 fit the count."""
    def one():
        r = app.test_client().post("/v1/step-up", json={"action": "payment.authorize",
                                                          "transaction": pay(amount)}, headers=user["auth"])
        assert r.status_code == 201, r.get_json()
        return r.get_json().get("exempt")

    results = race([one] * 20)
    assert results.count("low_value") == cap and results.count(None) == 20 - cap
    cumulative, count = db.execute("SELECT cumulative, count FROM payment_exemption_counters").fetchone()
    assert count == cap and cumulative == Decimal(amount) * cap
    assert len(exempted(db)) == cap
    assert db.execute("SELECT count(*) FROM step_up_tokens WHERE exemption = 'low_value'").fetchone()[0] == cap


# ---------------------------------------------------------------------------- trusted payees
def step_up_for(client, user, action) -> str:
    r = client.post("/v1/step-up", json={"action": action}, headers=user["auth"])
    assert r.status_code == 201, r.get_json()
    return full_step_up(client, user, r.get_json())["step_up_token"]


def test_trusted_payee_needs_step_up_to_add_and_exempts_any_amount(client, user, backend, db):
    big = pay("250000", payee="landlord")
    assert "exempt" not in ask(client, user, big)
    r = client.post("/v1/payees/trusted", json={"payee": "landlord"}, headers=user["auth"])
    assert r.status_code == 401 and r.get_json()["code"] == "step_up_required"
    wrong = step_up_for(client, user, "factor.add")  # another action's token does not do
    r = client.post("/v1/payees/trusted", json={"payee": "landlord"},
                    headers={**user["auth"], "X-Step-Up-Token": wrong})
    assert r.status_code == 401
    token = step_up_for(client, user, "payee.trust")
    r = client.post("/v1/payees/trusted", json={"payee": "landlord"},
                    headers={**user["auth"], "X-Step-Up-Token": token})
    assert r.status_code == 201 and r.get_json()["payee"] == "landlord"
    again = client.post("/v1/payees/trusted", json={"payee": "other"},
                        headers={**user["auth"], "X-Step-Up-Token": token})
    assert again.status_code == 401  # the step-up token worked once
    listed = client.get("/v1/payees/trusted", headers=user["auth"]).get_json()["payees"]
    assert [p["payee"] for p in listed] == ["landlord"]

    out = ask(client, user, big)
    assert out["exempt"] == "trusted_payee" and out["amr"] == []
    assert redeem(client, backend, out["step_up_token"], big).get_json()["exemption"] == "trusted_payee"
    assert redeem(client, backend, out["step_up_token"], big).status_code == 409
    # trusted payees take nothing from the low-value counters
    assert db.execute("SELECT count(*) FROM payment_exemption_counters").fetchone()[0] == 0

    assert client.delete("/v1/payees/trusted?payee=landlord", headers=user["auth"]).status_code == 204
    assert client.delete("/v1/payees/trusted?payee=landlord", headers=user["auth"]).status_code == 404
    assert client.delete("/v1/payees/trusted", headers=user["auth"]).status_code == 400
    assert "exempt" not in ask(client, user, big)
    actions = [r[0] for r in db.execute(
        "SELECT action FROM audit_log WHERE action LIKE 'payee.%' ORDER BY id").fetchall()]
    assert actions == ["payee.trusted", "payee.untrusted"]


def test_trusted_payees_are_per_account(client, user, twilio, smtp, db):
    token = step_up_for(client, user, "payee.trust")
    assert client.post("/v1/payees/trusted", json={"payee": "landlord"},
                       headers={**user["auth"], "X-Step-Up-Token": token}).status_code == 201
    other = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, other["enrollment_token"], key)
    tokens = sign_in(client, other, key, **{"X-Device-Token": other["device_token"]})
    age_devices(db, other["account_id"])
    someone = {"auth": bearer(tokens["access_token"]), "key": key}
    assert client.get("/v1/payees/trusted", headers=someone["auth"]).get_json() == {"payees": []}
    assert "exempt" not in ask(client, someone, pay("250000", payee="landlord"))
    assert client.delete("/v1/payees/trusted?payee=landlord", headers=someone["auth"]).status_code == 404


# ---------------------------------------------------------------------------- recurring
def test_recurring_series_starts_with_a_full_step_up(client, user, backend, db):
    monthly = pay("9800", payee="gym")  # above the low-value cap
    ch = ask(client, user, monthly, recurring=True)
    assert "challenge_id" in ch
    small = ask(client, user, pay("100"), recurring=True)
    assert "challenge_id" in small  # a series never starts by an exemption
    done = full_step_up(client, user, ch)
    assert redeem(client, backend, done["step_up_token"], monthly).get_json()["exemption"] is None
    assert "exempt" not in ask(client, user, monthly)  # less than a day after the start
    db.execute("UPDATE recurring_series SET started_at = now() - interval '30 days'")
    out = ask(client, user, monthly)
    assert out["exempt"] == "recurring"
    assert redeem(client, backend, out["step_up_token"], monthly).get_json()["exemption"] == "recurring"
    assert "exempt" not in ask(client, user, monthly)  # one per day per series
    # the same payee with another amount is not the series
    db.execute("UPDATE recurring_series SET last_exempt_at = now() - interval '30 days'")
    assert "exempt" not in ask(client, user, pay("9801", payee="gym"))
    assert "exempt" not in ask(client, user, pay("9800", payee="gym2"))
    assert ask(client, user, monthly)["exempt"] == "recurring"
    kinds = [d["exemption"] for d in exempted(db)]
    assert kinds == ["recurring", "recurring"]
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'payment.recurring_started'").fetchone()[0] == 1


def test_recurring_step_up_is_only_for_payments(client, user):
    r = client.post("/v1/step-up", json={"action": "factor.add", "recurring": True}, headers=user["auth"])
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "recurring"


def test_twenty_racing_payments_of_a_series_get_one_exemption(app, client, user, db):
    monthly = pay("9800", payee="gym")
    full_step_up(client, user, ask(client, user, monthly, recurring=True))
    db.execute("UPDATE recurring_series SET started_at = now() - interval '30 days'")

    def one():
        r = app.test_client().post("/v1/step-up", json={"action": "payment.authorize", "transaction": monthly},
                                   headers=user["auth"])
        assert r.status_code == 201, r.get_json()
        return r.get_json().get("exempt")

    results = race([one] * 20)
    assert results.count("recurring") == 1 and results.count(None) == 19
    assert len(exempted(db)) == 1


# ---------------------------------------------------------------------------- suspension
def test_a_new_device_gets_no_exemption(client, user, db):
    assert ask(client, user, pay("100"))["exempt"] == "low_value"
    fresh = sign_in(client, user, user["key"])  # no device token: a new device
    newcomer = {**user, "auth": bearer(fresh["access_token"])}
    assert "exempt" not in ask(client, newcomer, pay("100"))
    # a device token younger than the cooldown (7 days) is still new
    db.execute("UPDATE device_tokens SET created_at = now() - interval '6 days' WHERE id = "
               "(SELECT device_token_id FROM sessions WHERE id = %s)", (fresh["session_id"],))
    assert "exempt" not in ask(client, newcomer, pay("100"))
    db.execute("UPDATE device_tokens SET created_at = now() - interval '8 days' WHERE id = "
               "(SELECT device_token_id FROM sessions WHERE id = %s)", (fresh["session_id"],))
    assert ask(client, newcomer, pay("100"))["exempt"] == "low_value"


def test_a_recent_password_reset_suspends_exemptions(client, twilio, user, db):
    rid = client.post("/v1/password-resets", json={"email": user["email"]}).get_json()["reset_id"]
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "reset code" in m["body"])
    s = client.post(f"/v1/password-resets/{rid}/sms", json={"code": extract_code(sms["body"])}).get_json()
    f = client.post(f"/v1/password-resets/{rid}/factor",
                    json={"method": "webauthn", "credential": user["key"].get(s["webauthn_options"])})
    new_password = "a completely new passphrase 77"
    assert client.post(f"/v1/password-resets/{rid}/complete", json={
        "reset_token": f.get_json()["reset_token"], "new_password": new_password}).status_code == 204
    account = {**user, "password": new_password}
    tokens = sign_in(client, account, user["key"])
    age_devices(db, user["account_id"])  # the device rule alone would allow it now
    after = {**user, "auth": bearer(tokens["access_token"])}
    assert "exempt" not in ask(client, after, pay("100"))
    db.execute("UPDATE password_resets SET completed_at = now() - interval '8 days'")
    assert ask(client, after, pay("100"))["exempt"] == "low_value"


def test_a_freeze_suspends_exemptions(app, client, user, db):
    admin = app.extensions["authsvc"].admin
    admin.freeze(user["account_id"], operator="test", reason="suspected takeover")
    admin.unfreeze(user["account_id"], operator="test", reason="owner confirmed", keep_password=True)
    tokens = sign_in(client, user, user["key"])
    age_devices(db, user["account_id"])
    after = {**user, "auth": bearer(tokens["access_token"])}
    # the unfreeze is less than the cooldown ago (audit rows cannot be aged: none is exempt)
    assert "exempt" not in ask(client, after, pay("100"))
    assert exempted(db) == []


def test_an_attack_in_progress_suspends_exemptions(make_app, exempt_settings, twilio, smtp, db):
    app = make_app(exempt_settings.replace(attack_failures_per_minute=3))
    client = app.test_client()
    account = register(client, twilio, smtp)
    key = SoftAuthenticator()
    enroll_webauthn(client, account["enrollment_token"], key)
    tokens = sign_in(client, account, key, **{"X-Device-Token": account["device_token"]})
    age_devices(db, account["account_id"])
    user = {**account, "key": key, "auth": bearer(tokens["access_token"])}
    assert ask(client, user, pay("100"))["exempt"] == "low_value"
    for i in range(3):  # failed logins from elsewhere: the service sees an attack
        client.post("/v1/login", json={"email": f"nobody{i}@example.com", "password": "wrong password 123"},
                    environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"})
    assert app.extensions["authsvc"].throttle.attack_active()
    assert "exempt" not in ask(client, user, pay("100"))


def test_the_second_factor_lock_suspends_exemptions(client, user, db):
    db.execute("UPDATE accounts SET locked_until = now() + interval '10 minutes'")
    assert "exempt" not in ask(client, user, pay("100"))
    db.execute("UPDATE accounts SET locked_until = NULL")
    assert ask(client, user, pay("100"))["exempt"] == "low_value"


def test_a_full_step_up_can_be_asked_for_where_an_exemption_would_apply(client, user, db):
    ch = ask(client, user, pay("100"), allow_exemption=False)
    assert "challenge_id" in ch and "exempt" not in ch
    assert db.execute("SELECT count(*) FROM payment_exemption_counters").fetchone()[0] == 0
    assert ask(client, user, pay("100"))["exempt"] == "low_value"
