"""Look-alike emails (Unicode TS #39 confusables) are taken like the email they imitate: at
registration and on an email change, with the same answer as any taken email."""

from __future__ import annotations

import time

import pytest

from authsvc.security import confusables
from authsvc.services.core import contacts
from tests.support.flows import bearer, enroll_totp, login_password, new_phone, register, start_registration
from tests.support.messages import extract_code

OWNER = "alice@example.com"
LOOKALIKES = [
    "al\u0131ce@example.com",   # LATIN SMALL LETTER DOTLESS I
    "al\u0456ce@example.com",   # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "AL\u0130CE@example.com",   # LATIN CAPITAL LETTER I WITH DOT ABOVE (case-folds to i + U+0307)
    "alice@ex\u0430mple.com",   # CYRILLIC SMALL LETTER A in the domain
    "a1ice@example.com",        # DIGIT ONE for l
]


def skeleton_of(email: str) -> str:
    return contacts.email_skeleton(contacts.normalize_email(email)[1])


def test_the_bundled_data_is_unicodes_confusables():
    assert confusables.entry_count() > 6000
    assert confusables.skeleton("\u0131") == confusables.skeleton("i")
    assert confusables.skeleton("m") == "rn"  # multi-character prototypes


@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_lookalikes_share_the_skeleton_and_distinct_emails_do_not(lookalike):
    assert skeleton_of(lookalike) == skeleton_of(OWNER)
    for other in ("alice2@example.com", "al\u00efce@example.com", "bob@example.com", "alice@example.org"):
        assert skeleton_of(other) != skeleton_of(OWNER), other


@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_a_lookalike_of_a_registered_email_is_taken(client, twilio, smtp, db, lookalike):
    owner = register(client, twilio, smtp, email=OWNER)
    smtp.clear()
    fresh, _, _ = start_registration(client)
    resp, _, _ = start_registration(client, email=lookalike)
    assert resp.status_code == fresh.status_code == 202
    assert set(resp.get_json()) == set(fresh.get_json())
    # the owner of the real address hears of it, at the real address; no code goes anywhere
    notice = smtp.wait_for(lambda m: m["to"] == owner["email"] and "already has an account" in m["body"])
    with pytest.raises(AssertionError):
        extract_code(notice["body"])
    time.sleep(0.3)
    assert not [m for m in smtp.snapshot() if m["to"] == lookalike]
    rid = resp.get_json()["registration_id"]
    r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": "000000", "email_code": "000000"})
    assert r.status_code == 400
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1


def test_the_database_refuses_two_accounts_with_one_skeleton(client, twilio, smtp, db):
    import psycopg

    register(client, twilio, smtp, email=OWNER)
    stored = db.execute("SELECT email_skeleton FROM accounts").fetchone()[0]
    assert stored == skeleton_of(OWNER)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO accounts (id, email, email_normalized, email_skeleton, phone, password_hash, "
            "webauthn_user_id, email_verified_at, phone_verified_at) "
            "VALUES (gen_random_uuid(), 'x', 'al\u0131ce@example.com', %s, '+819012345678', 'h', "
            "'\\x01', now(), now())", (stored,))


def test_a_registration_racing_a_lookalike_one_makes_one_account(client, twilio, smtp, db):
    """Both pass the start check; the unique skeleton decides at verify."""
    first, _, phone1 = start_registration(client, email=OWNER)
    second, _, phone2 = start_registration(client, email=LOOKALIKES[0])
    codes = []
    for resp, email, phone in ((first, OWNER, phone1), (second, LOOKALIKES[0], phone2)):
        sms = twilio.wait_for(lambda m, p=phone: m["to"] == p)
        mail = smtp.wait_for(lambda m, e=email: m["to"] == e)
        codes.append((resp.get_json()["registration_id"], extract_code(sms["body"]), extract_code(mail["body"])))
    results = [client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": p, "email_code": e}).status_code
               for rid, p, e in codes]
    assert results == [201, 400]
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1


def test_an_email_change_to_a_lookalike_of_another_account_cannot_succeed(client, twilio, smtp, db):
    victim = register(client, twilio, smtp, email=OWNER)
    user = register(client, twilio, smtp)
    factor = enroll_totp(client, user["enrollment_token"])
    body = login_password(client, user).get_json()
    session = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "totp",
                                                  "code": factor["totp"].at(time.time() + 30)}).get_json()
    auth = bearer(session["access_token"])

    def step_up_token(code: str) -> str:
        ch = client.post("/v1/step-up", json={"action": "contact.change"}, headers=auth).get_json()
        v = client.post(f"/v1/step-up/{ch['challenge_id']}/verify", json={"method": "recovery_code", "code": code},
                        headers=auth)
        assert v.status_code == 200, v.get_json()
        return v.get_json()["step_up_token"]

    smtp.clear()
    r = client.post("/v1/account/email", json={"email": LOOKALIKES[1]},
                    headers={**auth, "X-Step-Up-Token": step_up_token(factor["recovery_codes"][0])})
    assert r.status_code == 202
    smtp.wait_for(lambda m: m["to"] == victim["email"] and "tried" in m["subject"])
    assert not [m for m in smtp.snapshot() if m["to"] == LOOKALIKES[1]]
    v = client.post(f"/v1/account/changes/{r.get_json()['change_id']}/verify", json={"code": "000000"}, headers=auth)
    assert v.status_code == 400
    # a look-alike of one's own address is no one else's: that change works
    own = user["email"].replace("e", "\u0435")  # CYRILLIC SMALL LETTER IE
    assert skeleton_of(own) == skeleton_of(user["email"])
    r = client.post("/v1/account/email", json={"email": own},
                    headers={**auth, "X-Step-Up-Token": step_up_token(factor["recovery_codes"][1])})
    assert r.status_code == 202
    code = extract_code(smtp.wait_for(lambda m: m["to"] == own)["body"])
    assert client.post(f"/v1/account/changes/{r.get_json()['change_id']}/verify", json={"code": code},
                       headers=auth).status_code == 204
    row = db.execute("SELECT email_skeleton FROM accounts WHERE id = %s", (user["account_id"],)).fetchone()
    assert row[0] == skeleton_of(own)


def test_db_upgrade_fills_in_skeletons_of_older_accounts(cli_env, client, twilio, smtp, db):
    from click.testing import CliRunner

    from authsvc import cli

    owner = register(client, twilio, smtp, email=OWNER)
    other = register(client, twilio, smtp)
    # as before migration 0026: no skeletons, and a look-alike pair that already exists
    db.execute("UPDATE accounts SET email_skeleton = NULL")
    db.execute("INSERT INTO accounts (id, email, email_normalized, phone, password_hash, webauthn_user_id, "
               "email_verified_at, phone_verified_at, created_at) VALUES ('ffffffff-ffff-4fff-bfff-ffffffffffff', "
               "%s, %s, '+819012345678', 'h', '\\x02', now(), now(), now())", (LOOKALIKES[0], LOOKALIKES[0]))
    out = CliRunner().invoke(cli.main, ["db", "upgrade"], env=cli_env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "email skeletons filled in: 2" in out.output
    assert "ffffffff-ffff-4fff-bfff-ffffffffffff" in out.output  # reported, left without one
    rows = dict(db.execute("SELECT id::text, email_skeleton FROM accounts").fetchall())
    assert rows[owner["account_id"]] == skeleton_of(OWNER)
    assert rows[other["account_id"]] == skeleton_of(other["email"])
    assert rows["ffffffff-ffff-4fff-bfff-ffffffffffff"] is None
    again = CliRunner().invoke(cli.main, ["db", "upgrade"], env=cli_env, catch_exceptions=False)
    assert "filled in" not in again.output  # idempotent
    # the look-alike is still taken for newcomers through the owner's skeleton
    resp, _, _ = start_registration(client, email=LOOKALIKES[2], phone=new_phone())
    rid = resp.get_json()["registration_id"]
    assert client.post(f"/v1/registrations/{rid}/verify",
                       json={"phone_code": "000000", "email_code": "000000"}).status_code == 400
