"""The operator CLI against the test database (same process, click's runner)."""

from __future__ import annotations

import os
import pwd

import psycopg
import pytest
from click.testing import CliRunner

from authsvc import cli
from authsvc.config import os_user


@pytest.fixture
def run(cli_env):
    env = {**cli_env, "AUTHSVC_OPERATOR": "alice"}

    def _run(*args: str):
        return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)

    return _run


def test_db_status_and_upgrade_are_idempotent(run):
    assert run("db", "upgrade").output.strip() == "database is current"
    status = run("db", "status")
    assert status.exit_code == 0 and "pending" not in status.output


def test_clients_create_list_revoke_with_audit(run, db):
    created = run("clients", "create", "payments-api", "--reason", "onboarding CHG-1")
    assert created.exit_code == 0
    client_id = created.output.split("client_id: ")[1].split()[0]
    secret = created.output.split("client_secret: ")[1].split()[0]
    assert len(secret) >= 43
    stored = bytes(db.execute("SELECT secret_hash FROM clients").fetchone()[0])
    assert secret.encode() not in stored
    listed = run("clients", "list").output
    assert client_id in listed and "active" in listed
    assert run("clients", "revoke", client_id, "--reason", "rotated").exit_code == 0
    assert "revoked" in run("clients", "list").output
    assert run("clients", "revoke", client_id, "--reason", "again").exit_code != 0
    actions = db.execute("SELECT actor, action, detail->>'reason' FROM audit_log ORDER BY id").fetchall()
    assert ("operator:alice", "client.created", "onboarding CHG-1") in actions
    assert ("operator:alice", "client.revoked", "rotated") in actions
    assert {r[0] for r in db.execute("SELECT detail->>'os_user' FROM audit_log").fetchall()} == {os_user()}


def test_reason_is_required(run):
    result = run("clients", "create", "x")
    assert result.exit_code != 0 and "--reason" in result.output


@pytest.mark.parametrize("reason", ["", "   ", "x", "....", "\t \n", "12345"])
def test_a_reason_must_say_something(run, db, reason):
    result = run("clients", "create", "x", "--reason", reason)
    assert result.exit_code != 0 and "reason" in result.output
    assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0


def test_the_os_user_is_recorded_whatever_the_declared_operator(cli_env, db):
    result = CliRunner().invoke(cli.main, ["clients", "create", "x", "--reason", "CHG-9 new backend"],
                                env={**cli_env, "AUTHSVC_OPERATOR": "someone-else"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    actor, detail = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'client.created'").fetchone()
    assert actor == "operator:someone-else"
    assert detail["os_user"] == os_user() == pwd.getpwuid(os.geteuid()).pw_name
    assert detail["reason"] == "CHG-9 new backend"


def test_keys_rotate_publishes_a_new_key(run, app, client, db):
    before = {k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]}
    out = run("keys", "rotate", "--reason", "quarterly")
    assert out.exit_code == 0 and "signs in 360s" in out.output
    kid = out.output.split("new signing key ")[1].split()[0]
    app.extensions["authsvc"].keys.refresh()  # the serving process re-reads keys every 30 s
    after = {k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]}
    assert kid in after and kid not in before
    assert db.execute("SELECT detail->>'reason' FROM audit_log WHERE action = 'keys.rotated'").fetchone()[0] == "quarterly"


def test_migrations_need_only_the_database(settings):
    result = CliRunner().invoke(
        cli.main, ["db", "status"],
        env={"AUTHSVC_DATABASE_URL": settings.database_url, "AUTHSVC_MIGRATIONS_DIR": str(settings.migrations_dir),
             "AUTHSVC_ENCRYPTION_KEY": "", "AUTHSVC_TWILIO_AUTH_TOKEN": ""},
    )
    assert result.exit_code == 0, result.output


def test_production_start_refuses_weak_or_missing_secrets(monkeypatch):
    result = CliRunner().invoke(
        cli.main, ["clients", "list"],
        env={"AUTHSVC_DATABASE_URL": "postgresql://x/y", "AUTHSVC_ENCRYPTION_KEY": "",
             "AUTHSVC_TWILIO_AUTH_TOKEN": "changeme"},
    )
    assert result.exit_code != 0
    assert "AUTHSVC_ENCRYPTION_KEY is missing" in result.output
    assert "AUTHSVC_TWILIO_AUTH_TOKEN is weak" in result.output


def test_outbox_status_and_retry(run, make_app, settings, db, twilio):
    make_app(settings, start_outbox=False).test_client().post(
        "/v1/registrations",
        json={"email": "ops@example.com", "phone": "+819012345670", "password": "correct horse battery staple 42"},
    )
    db.execute("UPDATE outbox SET failed_at = now(), attempts = 12")  # the SMS + email bundle gave up
    assert run("outbox", "status").output.split() == ["pending:", "0", "failed:", "1"]
    assert run("outbox", "retry", "--reason", "twilio outage over").output.strip() == "requeued 1"
    assert run("outbox", "status").output.split() == ["pending:", "1", "failed:", "0"]
    assert run("worker", "--once").output.strip() == "delivered 1"
    twilio.wait_for(lambda m: m["to"] == "+819012345670")
    assert db.execute("SELECT detail->>'reason' FROM audit_log WHERE action = 'outbox.requeued'").fetchone()[0] \
        == "twilio outage over"


def test_accounts_incident_commands(run, client, twilio, smtp, db):
    from tests.support.flows import bearer, enroll_totp, login_password, register

    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    import time

    body = login_password(client, account).get_json()
    tokens = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "totp",
                                                 "code": factor["totp"].at(time.time() + 30)}).get_json()
    shown = run("accounts", "show", account["email"].upper()).output
    assert account["account_id"] in shown and "live_sessions: 1" in shown and "totp:phone" in shown
    assert account["phone"] not in shown

    assert run("accounts", "freeze", account["account_id"], "--reason", "INC-7").exit_code == 0
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401
    assert db.execute("SELECT status FROM accounts").fetchone()[0] == "frozen"
    assert run("accounts", "unfreeze", account["account_id"], "--reason", "INC-7 closed").exit_code == 0
    assert run("accounts", "unfreeze", account["account_id"], "--reason", "again").exit_code != 0

    assert run("accounts", "reset-factors", account["email"], "--reason", "lost phone").exit_code == 0
    assert login_password(client, account).get_json()["methods"] == ["sms"]

    assert run("accounts", "require-password-change", account["email"], "--reason", "breach").exit_code == 0
    assert db.execute("SELECT password_change_required FROM accounts").fetchone()[0] is True
    assert run("accounts", "revoke-sessions", account["email"], "--reason", "INC-7 again").exit_code == 0
    assert run("accounts", "show", "nobody@example.com").exit_code != 0

    audit = db.execute("SELECT actor, action, detail->>'reason' FROM audit_log WHERE actor LIKE 'operator:%' "
                       "ORDER BY id").fetchall()
    assert [a[1] for a in audit] == ["account.frozen", "account.unfrozen", "factors.reset",
                                      "password.change_required", "sessions.revoked"]
    assert all(a[0] == "operator:alice" for a in audit) and audit[0][2] == "INC-7"


def test_audit_tail_and_verify_detect_tampering(run, db):
    run("clients", "create", "a", "--reason", "ticket one")
    run("clients", "create", "b", "--reason", "ticket two")
    tail = run("audit", "tail", "-n", "5").output
    assert "operator:alice\tclient.created" in tail and '"reason": "ticket two"' in tail
    ok = run("audit", "verify")
    assert ok.exit_code == 0 and "intact: 2 rows" in ok.output
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # append-only (tests/test_audit.py: past that)
        db.execute("UPDATE audit_log SET detail = jsonb_set(detail, '{reason}', '\"edited\"') WHERE id = "
                   "(SELECT min(id) FROM audit_log)")
    with db.transaction():
        db.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        db.execute("UPDATE audit_log SET detail = jsonb_set(detail, '{reason}', '\"edited\"') WHERE id = "
                   "(SELECT min(id) FROM audit_log)")
        db.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    broken = run("audit", "verify")
    assert broken.exit_code == 1 and "BROKEN" in broken.output


def test_audit_verify_detects_a_deleted_row(run, db):
    for name in ("a", "b", "c"):
        assert run("clients", "create", name, "--reason", f"client {name}").exit_code == 0
    with db.transaction():
        db.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        db.execute("DELETE FROM audit_log WHERE id = (SELECT min(id) + 1 FROM audit_log)")
        db.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    assert run("audit", "verify").exit_code == 1


def test_incident_forces_password_change_on_every_account_resumably(run, client, twilio, smtp, db):
    from tests.support.flows import register

    accounts = [register(client, twilio, smtp) for _ in range(5)]
    # an interrupted run: the first batch of 2 committed, then the process died
    first = run("incident", "require-password-change", "--all", "--batch-size", "2", "--reason", "INC-1 breach")
    assert first.exit_code == 0 and "finished: 5 accounts" in first.output
    assert db.execute("SELECT count(*) FROM accounts WHERE password_change_required").fetchone()[0] == 5
    # resumability: reopen the incident with its cursor after two accounts, as a crash would leave it
    db.execute("UPDATE accounts SET password_change_required = false")
    second_cursor = sorted(a["account_id"] for a in accounts)[1]
    db.execute("UPDATE incidents SET finished_at = NULL, cursor = %s, done_count = 2", (second_cursor,))
    resumed = run("incident", "require-password-change", "--all", "--reason", "INC-1 breach")
    assert "resumed and finished: 5 accounts" in resumed.output
    flagged = {str(r[0]) for r in db.execute("SELECT id FROM accounts WHERE password_change_required").fetchall()}
    assert flagged == set(sorted(a["account_id"] for a in accounts)[2:])  # the first two were not redone
    assert run("audit", "verify").exit_code == 0
    assert run("incident", "require-password-change", "--reason", "x").exit_code != 0  # --all is required
