"""What a password reset, a password change and an unfreeze leave behind: pending mfa_tokens,
step-up challenges and resets die with the old password; a newer reset kills an older one; the
new password differs from the current one; an unfreeze asks for a password reset."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from authsvc import cli
from tests.support.concurrency import race
from tests.support.flows import bearer, enroll_totp, login_password, register
from tests.support.messages import extract_code

NEW_PASSWORD = "a completely new passphrase 77"


@pytest.fixture
def user(client, twilio, smtp):
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    return {**account, "factor": factor, "codes": list(factor["recovery_codes"])}


def reset_code(twilio, phone, seen: set) -> str:
    sms = twilio.wait_for(lambda m: m["to"] == phone and "reset code" in m["body"] and m["body"] not in seen)
    seen.add(sms["body"])
    return extract_code(sms["body"])


def reset_to_token(client, twilio, user, seen: set) -> tuple[str, str]:
    """Start a reset and pass the SMS and factor steps; (reset_id, reset_token)."""
    rid = client.post("/v1/password-resets", json={"email": user["email"]}).get_json()["reset_id"]
    code = reset_code(twilio, user["phone"], seen)
    assert client.post(f"/v1/password-resets/{rid}/sms", json={"code": code}).status_code == 200
    f = client.post(f"/v1/password-resets/{rid}/factor", json={"method": "recovery_code", "code": user["codes"].pop()})
    assert f.status_code == 200, f.get_json()
    return rid, f.get_json()["reset_token"]


def complete(client, rid, token, password=NEW_PASSWORD):
    return client.post(f"/v1/password-resets/{rid}/complete", json={"reset_token": token, "new_password": password})


def sign_in(client, user, password=None) -> dict:
    body = login_password(client, {**user, "password": password or user["password"]}).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "recovery_code",
                                           "code": user["codes"].pop()})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def pending_step_up(client, tokens) -> str:
    r = client.post("/v1/step-up", json={"action": "factor.add"}, headers=bearer(tokens["access_token"]))
    assert r.status_code == 201
    return r.get_json()["challenge_id"]


def live_step_up_challenges(db) -> int:
    return db.execute("SELECT count(*) FROM step_up_challenges "
                      "WHERE verified_at IS NULL AND dead_at IS NULL AND expires_at > now()").fetchone()[0]


# ---------------------------------------------------------------------------- reset
def test_a_reset_kills_pending_mfa_tokens_and_step_up_challenges(client, twilio, user, db):
    tokens = sign_in(client, user)
    pending_step_up(client, tokens)
    stale = login_password(client, user).get_json()["mfa_token"]  # the attacker stopped here
    rid, reset_token = reset_to_token(client, twilio, user, set())
    assert complete(client, rid, reset_token).status_code == 204
    # the mfa_token issued for the old password gives nothing, even with a correct answer
    r = client.post("/v1/login/mfa", json={"mfa_token": stale, "method": "totp",
                                           "code": user["factor"]["totp"].at(time.time() + 30)})
    assert r.status_code == 401
    assert live_step_up_challenges(db) == 0
    assert db.execute("SELECT count(*) FROM mfa_tokens WHERE used_at IS NULL AND dead_at IS NULL").fetchone()[0] == 0


def test_a_newer_reset_kills_the_older_one(client, twilio, user):
    seen: set = set()
    old_rid, old_token = reset_to_token(client, twilio, user, seen)
    older = client.post("/v1/password-resets", json={"email": user["email"]}).get_json()["reset_id"]
    older_code = reset_code(twilio, user["phone"], seen)
    # (a third reset SMS from one client needs the known device's quota: one client gets 2 of
    # the anonymous 3)
    newest = client.post("/v1/password-resets", json={"email": user["email"]},
                         headers={"X-Device-Token": user["device_token"]}).get_json()["reset_id"]
    newest_code = reset_code(twilio, user["phone"], seen)
    # neither the finished-but-not-completed one nor the one that was waiting for its code works
    assert complete(client, old_rid, old_token).status_code == 401
    assert client.post(f"/v1/password-resets/{older}/sms", json={"code": older_code}).status_code == 400
    assert client.post(f"/v1/password-resets/{newest}/sms", json={"code": newest_code}).status_code == 200


def test_a_reset_refuses_the_current_password_and_changes_nothing(client, twilio, user):
    rid, token = reset_to_token(client, twilio, user, set())
    same = complete(client, rid, token, password=user["password"])
    assert same.status_code == 400
    body = same.get_json()
    assert body["code"] == "weak_password" and body["errors"][0]["field"] == "new_password"
    # the same password typed in another Unicode form is the same password
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in user["password"])
    assert complete(client, rid, token, password=fullwidth).status_code == 400
    assert complete(client, rid, token).status_code == 204  # the reset itself was not used up


# ---------------------------------------------------------------------------- password change
def test_a_password_change_kills_pending_mfa_tokens_resets_and_challenges(app, client, twilio, user, db):
    tokens = sign_in(client, user)
    pending_step_up(client, tokens)
    app.extensions["authsvc"].admin.require_password_change(user["email"], operator="t", reason="breach")
    stale = login_password(client, user).get_json()["mfa_token"]
    # a reset that got as far as its SMS step
    rid = client.post("/v1/password-resets", json={"email": user["email"]}).get_json()["reset_id"]
    assert client.post(f"/v1/password-resets/{rid}/sms",
                       json={"code": reset_code(twilio, user["phone"], set())}).status_code == 200
    body = login_password(client, user).get_json()
    forced = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "recovery_code",
                                                "code": user["codes"].pop()})
    assert forced.status_code == 403
    pct = forced.get_json()["password_change_token"]
    assert client.post("/v1/password-change",
                       json={"password_change_token": pct, "new_password": NEW_PASSWORD}).status_code == 204
    r = client.post("/v1/login/mfa", json={"mfa_token": stale, "method": "recovery_code", "code": user["codes"].pop()})
    assert r.status_code == 401
    f = client.post(f"/v1/password-resets/{rid}/factor", json={"method": "recovery_code", "code": user["codes"].pop()})
    assert f.status_code == 400
    assert live_step_up_challenges(db) == 0


# ---------------------------------------------------------------------------- unfreeze
@pytest.fixture
def run(cli_env):
    env = {**cli_env, "AUTHSVC_OPERATOR": "alice"}
    return lambda *args: CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def test_unfreeze_sends_the_owner_through_a_reset_not_a_password_change(run, client, user, db, twilio, smtp):
    """Whoever caused the freeze may still have the password and a factor: after an unfreeze
    they earn no password_change_token; only a reset (the SMS code to the verified phone and a
    factor) opens the account again."""
    stale = login_password(client, user).get_json()["mfa_token"]  # taken before the unfreeze
    assert run("accounts", "freeze", user["email"], "--reason", "INC-9 takeover").exit_code == 0
    out = run("accounts", "unfreeze", user["email"], "--reason", "INC-9 owner verified")
    assert out.exit_code == 0 and "password reset" in out.output
    # the owner is told that a reset comes next, not merely that they can sign in (the CLI has
    # no sender of its own: the app's sender finds the message on its next idle round, <= 5 s)
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "active again" in m["body"], timeout=20)
    assert "Reset your password" in sms["body"]
    assert "reset your password" in smtp.wait_for(lambda m: m["to"] == user["email"]
                                                  and "active again" in m["body"], timeout=20)["body"]
    # the old password and factor (what the attacker had) lead nowhere
    r = client.post("/v1/login/mfa", json={"mfa_token": stale, "method": "recovery_code", "code": user["codes"][-1]})
    assert r.status_code == 401  # a proof from before the unfreeze died with it
    body = login_password(client, user).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "recovery_code",
                                           "code": user["codes"].pop()})
    assert r.status_code == 403 and r.get_json()["code"] == "password_reset_required", r.get_json()
    assert "password_change_token" not in r.get_json()
    assert db.execute("SELECT count(*) FROM password_change_tokens").fetchone()[0] == 0
    detail = db.execute("SELECT detail FROM audit_log WHERE action = 'account.unfrozen'").fetchone()[0]
    assert detail["password_reset_required"] is True and detail["reason"] == "INC-9 owner verified"
    # the reset (phone + factor) is the way back in; then the new password signs in
    rid, token = reset_to_token(client, twilio, user, set())
    assert complete(client, rid, token).status_code == 204
    assert sign_in(client, user, NEW_PASSWORD)["access_token"]


def test_unfreeze_keep_password_is_explicit_and_audited(run, client, user, db, twilio):
    assert run("accounts", "freeze", user["email"], "--reason", "INC-10 false alarm").exit_code == 0
    out = run("accounts", "unfreeze", user["email"], "--keep-password", "--reason", "INC-10 false alarm")
    assert out.exit_code == 0
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "active again" in m["body"])
    assert "You can sign in" in sms["body"] and "new password" not in sms["body"]
    assert sign_in(client, user)["access_token"]
    detail = db.execute("SELECT detail FROM audit_log WHERE action = 'account.unfrozen'").fetchone()[0]
    assert detail["password_reset_required"] is False and detail["keep_password"] is True


def test_a_reset_racing_an_old_mfa_answer_leaves_no_live_session(app, twilio, user, db):
    client = app.test_client()
    stale = login_password(client, user).get_json()["mfa_token"]
    rid, reset_token = reset_to_token(client, twilio, user, set())
    code = user["codes"].pop()
    statuses = race([
        lambda: app.test_client().post(f"/v1/password-resets/{rid}/complete",
                                       json={"reset_token": reset_token, "new_password": NEW_PASSWORD}).status_code,
        lambda: app.test_client().post("/v1/login/mfa", json={"mfa_token": stale, "method": "recovery_code",
                                                              "code": code}).status_code,
    ])
    assert 204 in statuses and all(s < 500 for s in statuses), statuses
    # whichever came first, nothing signed in with the old password survives the reset
    assert db.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NULL").fetchone()[0] == 0
