"""Known devices: server-issued device tokens (README, "Holding against the list attack (credential stuffing)").

Against the real database: the token is issued at registration and at logins from new devices,
stored hashed, bound to one account, dies with a reset, "sign out everywhere", a freeze and a
report; second-factor failures from unknown devices never lock out the owner's known device
(neither its sign-in nor its session's step-up), and the reset SMS quota of a known device
cannot be used up by anonymous requests.
"""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from authsvc import cli
from tests.support.flows import bearer, enroll_totp, register
from tests.support.messages import extract_code
from tests.support.metrics import metric


@pytest.fixture
def lax_client(make_app, settings):
    """Per-IP limits off: these tests are about per-account and per-device rules."""
    return make_app(settings.replace(rate_limits_enabled=False)).test_client()


@pytest.fixture
def user(lax_client, twilio, smtp):
    account = register(lax_client, twilio, smtp)
    factor = enroll_totp(lax_client, account["enrollment_token"])
    return {**account, "totp": factor["totp"], "recovery_codes": factor["recovery_codes"]}


def password_step(client, user, token=None, **headers):
    if token:
        headers["X-Device-Token"] = token
    return client.post("/v1/login", json={"email": user["email"], "password": user["password"]}, headers=headers)


def sign_in(client, user, token=None):
    """Password + a second factor (the next recovery code: TOTP would allow one login per
    30-second step); returns the /v1/login/mfa response."""
    first = password_step(client, user, token)
    assert first.status_code == 200, first.get_json()
    headers = {"X-Device-Token": token} if token else {}
    return client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"], "method": "recovery_code",
                                              "code": user["recovery_codes"].pop()}, headers=headers)


def wrong_answers(client, user, n, token=None):
    headers = {"X-Device-Token": token} if token else {}
    while n > 0:
        r = password_step(client, user, token)
        assert r.status_code == 200, r.get_json()
        for _ in range(min(5, n)):
            assert client.post("/v1/login/mfa", json={"mfa_token": r.get_json()["mfa_token"], "method": "totp",
                                                      "code": "000000"}, headers=headers).status_code == 401
            n -= 1


def live_tokens(db) -> int:
    return db.execute("SELECT count(*) FROM device_tokens WHERE revoked_at IS NULL").fetchone()[0]


def test_registration_issues_a_device_token_stored_only_hashed(user, db):
    token = user["device_token"]
    assert isinstance(token, str) and len(token) == 43  # 256 bits, base64url
    rows = db.execute("SELECT token_hash, account_id::text, expires_at - now() FROM device_tokens").fetchall()
    assert len(rows) == 1 and rows[0][1] == user["account_id"]
    assert bytes(rows[0][0]) != token.encode() and token.encode() not in bytes(rows[0][0])
    assert 364 <= rows[0][2].days <= 365  # one year


def test_refresh_answer_carries_no_device_token(lax_client, user):
    tokens = sign_in(lax_client, user, user["device_token"]).get_json()
    assert tokens["device_token"] == user["device_token"]
    refreshed = lax_client.post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200 and "device_token" not in refreshed.get_json()


def test_token_of_another_account_is_not_known(lax_client, twilio, smtp, user):
    other = register(lax_client, twilio, smtp)
    smtp.clear()
    r = sign_in(lax_client, user, other["device_token"])
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["device_token"] not in (other["device_token"], user["device_token"])
    smtp.wait_for(lambda m: m["to"] == user["email"] and "New sign-in" in m["subject"])


def test_expired_or_malformed_tokens_are_unknown(lax_client, user, db):
    db.execute("UPDATE device_tokens SET expires_at = now() - interval '1 second'")
    wrong_answers(lax_client, user, 10)
    for token in (user["device_token"], "x" * 43, "y" * 300):
        assert password_step(lax_client, user, token).status_code == 429  # the unknown-device lock


def test_unknown_devices_cannot_lock_out_the_known_device(lax_client, user, smtp, db):
    smtp.clear()
    wrong_answers(lax_client, user, 10)  # someone with the password, on another device
    locked = password_step(lax_client, user)
    assert locked.status_code == 429 and locked.get_json()["code"] == "rate_limited"
    smtp.wait_for(lambda m: m["to"] == user["email"] and "paused" in m["subject"])
    # the owner's known device signs in all the same, and that clears the escalation
    ok = sign_in(lax_client, user, user["device_token"])
    assert ok.status_code == 200, ok.get_json()
    assert db.execute("SELECT lock_count FROM accounts").fetchone()[0] == 0
    # unknown devices still wait until the lock ends
    assert password_step(lax_client, user).status_code == 429


def test_wrong_answers_from_the_known_device_do_not_lock_the_account(lax_client, user, db):
    wrong_answers(lax_client, user, 10, token=user["device_token"])
    assert db.execute("SELECT locked_until FROM accounts").fetchone()[0] is None
    assert password_step(lax_client, user).status_code == 200


def test_reset_factor_step_is_not_blocked_by_a_login_lock(lax_client, user, twilio, db):
    wrong_answers(lax_client, user, 10)
    assert password_step(lax_client, user).status_code == 429
    twilio.clear()
    rid = lax_client.post("/v1/password-resets", json={"email": user["email"]}).get_json()["reset_id"]
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "reset code" in m["body"])
    assert lax_client.post(f"/v1/password-resets/{rid}/sms", json={"code": extract_code(sms["body"])}).status_code == 200
    f = lax_client.post(f"/v1/password-resets/{rid}/factor", json={"method": "recovery_code", "code": user["recovery_codes"].pop()})
    assert f.status_code == 200, f.get_json()
    done = lax_client.post(f"/v1/password-resets/{rid}/complete",
                           json={"reset_token": f.get_json()["reset_token"], "new_password": "a new passphrase 2026"})
    assert done.status_code == 204
    assert live_tokens(db) == 0  # a reset makes every device unknown


def test_reset_sms_quota_of_a_known_device_is_its_own(lax_client, user, twilio):
    time.sleep(0.3)
    twilio.clear()
    for _ in range(3):  # anonymous requests use up the anonymous quota (of this client: 2)...
        assert lax_client.post("/v1/password-resets", json={"email": user["email"]}).status_code == 202
    assert lax_client.post("/v1/password-resets", json={"email": user["email"]}).status_code == 202
    time.sleep(0.5)
    assert len([m for m in twilio.snapshot() if "reset code" in m["body"]]) == 2
    # ...but not the owner's: a request from the known device still gets its code
    r = lax_client.post("/v1/password-resets", json={"email": user["email"]},
                        headers={"X-Device-Token": user["device_token"]})
    assert r.status_code == 202
    twilio.wait_for(lambda m: len([x for x in twilio.snapshot() if "reset code" in x["body"]]) == 3 or None)
    time.sleep(0.3)
    assert len([m for m in twilio.snapshot() if "reset code" in m["body"]]) == 3


def test_sign_out_everywhere_keeps_only_the_current_device(lax_client, user, db):
    current = sign_in(lax_client, user, user["device_token"]).get_json()
    laptop = sign_in(lax_client, user).get_json()  # a second, new device
    assert live_tokens(db) == 2
    assert lax_client.delete("/v1/sessions", headers=bearer(current["access_token"])).status_code == 204
    alive = db.execute("SELECT token_hash FROM device_tokens WHERE revoked_at IS NULL").fetchall()
    assert [bytes(r[0]) for r in alive] == [_hash(user["device_token"])]
    assert laptop["device_token"] != user["device_token"]


def test_operator_freeze_makes_every_device_unknown(user, db, cli_env):
    result = CliRunner().invoke(cli.main, ["accounts", "freeze", user["email"], "--reason", "phone reported stolen"],
                                env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert live_tokens(db) == 0


# --------------------------------------------------------------------------- step-up and the lock
PAYMENT = {"amount": "1200", "currency": "JPY", "payee": "merchant-42"}


def challenge(client, session):
    return client.post("/v1/step-up", json={"action": "payment.authorize", "transaction": PAYMENT},
                       headers=bearer(session["access_token"]))


def answer(client, session, challenge_id, method, code):
    return client.post(f"/v1/step-up/{challenge_id}/verify", json={"method": method, "code": code},
                       headers=bearer(session["access_token"]))


def test_unknown_devices_cannot_stop_the_known_device_from_stepping_up(lax_client, user, db):
    owner = sign_in(lax_client, user, user["device_token"]).get_json()  # signed in on the owner's phone
    wrong_answers(lax_client, user, 10)  # someone with the password, on another device
    assert password_step(lax_client, user).status_code == 429
    ch = challenge(lax_client, owner)
    assert ch.status_code == 201, ch.get_json()
    done = answer(lax_client, owner, ch.get_json()["challenge_id"], "recovery_code", user["recovery_codes"].pop())
    assert done.status_code == 200 and done.get_json()["step_up_token"]
    # the lock still holds for unknown devices
    assert password_step(lax_client, user).status_code == 429


def test_the_lock_still_pauses_step_up_of_a_session_whose_device_is_not_known(lax_client, user, db):
    session = sign_in(lax_client, user, user["device_token"]).get_json()
    before = challenge(lax_client, session).get_json()["challenge_id"]
    db.execute("UPDATE device_tokens SET expires_at = now() - interval '1 second'")  # no longer a known device
    wrong_answers(lax_client, user, 10)
    for r in (challenge(lax_client, session),
              answer(lax_client, session, before, "recovery_code", user["recovery_codes"][-1])):
        assert r.status_code == 429 and r.get_json()["code"] == "rate_limited"
        assert 0 < int(r.headers["Retry-After"]) <= 3600
    # counted as login's refusals are
    assert metric(lax_client.application, "authsvc_throttle_decisions_total",
                  decision="throttled", reason="factor_lock") >= 2


def test_wrong_step_up_answers_of_a_known_device_still_count_and_are_limited(lax_client, user, db):
    owner = sign_in(lax_client, user, user["device_token"]).get_json()
    first = challenge(lax_client, owner).get_json()["challenge_id"]
    for _ in range(5):
        assert answer(lax_client, owner, first, "totp", "000000").status_code == 401
    # five wrong answers killed the challenge: a right one no longer helps
    assert answer(lax_client, owner, first, "recovery_code", user["recovery_codes"][-1]).status_code == 401
    assert db.execute("SELECT count(*) FROM factor_failures WHERE from_known_device").fetchone()[0] == 5
    # the owner's own mistakes never lock unknown devices out...
    assert db.execute("SELECT locked_until FROM accounts").fetchone()[0] is None
    second = challenge(lax_client, owner).get_json()["challenge_id"]
    for _ in range(5):
        assert answer(lax_client, owner, second, "totp", "000000").status_code == 401
    assert db.execute("SELECT locked_until FROM accounts").fetchone()[0] is None
    assert password_step(lax_client, user).status_code == 200
    # ...but 10 wrong answers from known devices in 15 minutes pause this session's step-up
    r = challenge(lax_client, owner)
    assert r.status_code == 429 and r.get_json()["code"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 900
    db.execute("UPDATE factor_failures SET at = at - interval '16 minutes'")
    assert challenge(lax_client, owner).status_code == 201


def _hash(token: str) -> bytes:
    from authsvc.security import crypto

    return crypto.hash_token(token)


# --------------------------------------------------------------------------- a stolen device token or session
def test_a_stolen_device_token_guesses_at_most_10_codes_in_15_minutes_and_the_owner_is_told(
        lax_client, user, db, twilio, smtp):
    """The attacker has the password and a copy of the owner's X-Device-Token: the device is
    never locked, but its own wrong answers are bounded, and the owner hears of it."""
    token = user["device_token"]
    smtp.clear()
    twilio.clear()
    wrong_answers(lax_client, user, 10, token=token)
    first = password_step(lax_client, user, token)
    assert first.status_code == 200  # the password step is the device budget's business
    r = lax_client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"], "method": "totp",
                                               "code": user["totp"].now()}, headers={"X-Device-Token": token})
    assert r.status_code == 429 and r.get_json()["code"] == "rate_limited", r.get_json()
    assert 0 < int(r.headers["Retry-After"]) <= 900
    # even the right answer waits; the mfa_token is not used up by the refusal
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and m["subject"] == "Wrong codes on one of your devices")
    assert "10 wrong second-factor answers" in mail["body"] and "/report?token=" in mail["body"]
    twilio.wait_for(lambda m: m["to"] == user["phone"] and "Wrong codes were entered" in m["body"])
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'login.known_device_paused'").fetchone()[0] == 1
    # the account is not locked: another device of the owner (here: a new one) signs in
    assert db.execute("SELECT locked_until FROM accounts").fetchone()[0] is None
    assert sign_in(lax_client, user).status_code == 200
    # once the window has passed, the device may answer again
    db.execute("UPDATE factor_failures SET at = at - interval '16 minutes'")
    again = lax_client.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"],
                                                   "method": "recovery_code", "code": user["recovery_codes"].pop()},
                            headers={"X-Device-Token": token})
    assert again.status_code == 200, again.get_json()


def test_deleting_a_session_makes_its_device_unknown(lax_client, user, db):
    stolen = sign_in(lax_client, user, user["device_token"]).get_json()  # the session an attacker copied
    owner = sign_in(lax_client, user).get_json()  # the owner, on another device
    assert owner["device_token"] != user["device_token"]
    assert lax_client.delete(f"/v1/sessions/{stolen['session_id']}",
                             headers=bearer(owner["access_token"])).status_code == 204
    revoked = db.execute("SELECT revoked_reason FROM device_tokens WHERE revoked_at IS NOT NULL").fetchall()
    assert revoked == [("session_deleted",)]
    # the token of the deleted session no longer makes a device known: a sign-in with it is new
    again = sign_in(lax_client, user, user["device_token"]).get_json()
    assert again["device_token"] != user["device_token"]
    # a logout is not a deletion: the device stays known
    assert lax_client.post("/v1/logout", headers=bearer(again["access_token"])).status_code == 204
    assert sign_in(lax_client, user, again["device_token"]).get_json()["device_token"] == again["device_token"]


def test_forcing_a_password_change_makes_every_device_unknown(lax_client, user, db, cli_env):
    sign_in(lax_client, user)  # a second device
    assert live_tokens(db) == 2
    result = CliRunner().invoke(cli.main, ["accounts", "require-password-change", user["email"],
                                           "--reason", "password seen in a breach corpus"],
                                env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert live_tokens(db) == 0


def test_a_stolen_sessions_wrong_step_up_answers_pause_only_that_session(lax_client, user, db):
    stolen = sign_in(lax_client, user, user["device_token"]).get_json()  # a known device's session, copied
    other = sign_in(lax_client, user).get_json()  # the owner's other device (known from now on)
    for _ in range(2):
        ch = challenge(lax_client, stolen).get_json()["challenge_id"]
        for _ in range(5):
            assert answer(lax_client, stolen, ch, "totp", "000000").status_code == 401
    r = challenge(lax_client, stolen)
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 900
    # the owner pays from the other session at once
    ch = challenge(lax_client, other)
    assert ch.status_code == 201, ch.get_json()
    done = answer(lax_client, other, ch.get_json()["challenge_id"], "recovery_code", user["recovery_codes"].pop())
    assert done.status_code == 200 and done.get_json()["step_up_token"]
    # and the owner's devices still sign in
    assert sign_in(lax_client, user, user["device_token"]).status_code == 200
