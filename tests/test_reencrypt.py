"""Retiring an old encryption key: `keys usage` shows what depends on it, `keys reencrypt`
moves everything to the newest key (resumably, audited), after which the old key can go."""

from __future__ import annotations

import base64
import secrets
import time

import pyotp
import pytest
from click.testing import CliRunner

from authsvc import cli
from tests.support.flows import enroll_totp, register


def _env_keys(*keys: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys)


@pytest.fixture
def old_world(make_app, settings, app, client, twilio, smtp):
    """Data made under the old key t1: a TOTP secret, a signing key, an undelivered message,
    the audit chain key."""
    account = register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])
    # a message that stays in the outbox (no dispatcher running any more)
    app.extensions["authsvc"].outbox.stop()
    quiet = make_app(settings, start_outbox=False)
    for _ in range(2):
        assert quiet.test_client().post("/v1/password-resets", json={"email": account["email"]}).status_code == 202
    return account, factor


def test_reencrypt_retires_the_old_key(old_world, settings, cli_env, make_app, db):
    account, factor = old_world
    old = settings.encryption_keys[0]
    new = ("k2", secrets.token_bytes(32))

    def run(*args: str, keys=(new, old)):
        env = {**cli_env, "AUTHSVC_ENCRYPTION_KEY": _env_keys(*keys), "AUTHSVC_OPERATOR": "alice"}
        return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)

    before = run("keys", "usage").output
    t1_line = next(line for line in before.splitlines() if line.startswith("t1\t"))
    assert "decrypts only" in t1_line and "totp_secrets 1" in t1_line and "signing_keys 1" in t1_line
    assert "outbox" in t1_line and "audit_chain_key 1" in t1_line
    assert run("keys", "reencrypt", "--reason", "  ").exit_code != 0  # a reason is required

    out = run("keys", "reencrypt", "--batch-size", "1", "--reason", "retire t1, CHG-77")
    assert out.exit_code == 0, out.output
    assert "totp_secrets: 1 re-encrypted under k2" in out.output
    after = run("keys", "usage").output
    assert "t1\tdecrypts only\t0\tnothing" in after and "no longer used: t1" in after
    stored = db.execute("SELECT totp_secret_enc FROM factors").fetchone()[0]
    assert stored.startswith("v1.k2.")
    audit_rows = db.execute("SELECT action, detail FROM audit_log WHERE action LIKE 'keys.reencrypt%' "
                            "ORDER BY id").fetchall()
    assert [a for a, _ in audit_rows] == ["keys.reencrypt_started", "keys.reencrypted"]
    assert audit_rows[1][1]["reason"] == "retire t1, CHG-77" and audit_rows[1][1]["remaining"] == {}

    # the old key is gone: everything still works under the new one alone
    app = make_app(settings.replace(encryption_keys=(new,)), start_outbox=False)
    container = app.extensions["authsvc"]
    c = app.test_client()
    login = c.post("/v1/login", json={"email": account["email"], "password": account["password"]}).get_json()
    totp = pyotp.TOTP(factor["secret"])
    done = c.post("/v1/login/mfa", json={"mfa_token": login["mfa_token"], "method": "totp",
                                       "code": totp.at(time.time() + 30)})  # the enrollment used this step
    assert done.status_code == 200, done.get_json()  # TOTP secret decrypts, the old signing key signs
    assert container.audit_log.verify().intact  # the chain key decrypts
    assert db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0] >= 1
    assert container.outbox.deliver_due() >= 1  # the old message decrypts
    assert run("audit", "verify", keys=(new,)).exit_code == 0


def test_reencrypt_is_resumable(old_world, settings, make_app, db):
    old = settings.encryption_keys[0]
    new = ("k3", secrets.token_bytes(32))
    container = make_app(settings.replace(encryption_keys=(new, old)), start_outbox=False).extensions["authsvc"]

    class Crash(Exception):
        pass

    def crash(what: str, n: int) -> None:
        if what == "outbox":
            raise Crash  # after the first outbox batch committed

    with pytest.raises(Crash):
        container.reencryption.reencrypt(operator="alice", reason="retire t1", batch_size=1, on_batch=crash)
    usage = container.reencryption.usage()
    assert usage["k3"]["totp_secrets"] == 1 and usage["k3"]["signing_keys"] == 1 and usage["k3"]["outbox"] == 1
    left = usage["t1"]["outbox"]
    assert left >= 1
    report = container.reencryption.reencrypt(operator="alice", reason="retire t1 again")
    assert report.done["totp_secrets"] == report.done["signing_keys"] == 0  # nothing done twice
    assert report.done["outbox"] == left
    assert set(container.reencryption.usage()) == {"k3"}


def test_undecryptable_rows_are_reported_not_dropped(old_world, settings, make_app, db):
    # a secret under a key id that is no longer configured: it is counted, never changed
    db.execute("UPDATE factors SET totp_secret_enc = 'v1.gone.' || split_part(totp_secret_enc, '.', 3)")
    before = db.execute("SELECT totp_secret_enc FROM factors").fetchone()[0]
    new = ("k4", secrets.token_bytes(32))
    container = make_app(settings.replace(encryption_keys=(new, settings.encryption_keys[0])),
                         start_outbox=False).extensions["authsvc"]
    report = container.reencryption.reencrypt(operator="alice", reason="retire t1 now")
    assert report.failed["totp_secrets"] == 1 and report.done["totp_secrets"] == 0
    assert report.done["signing_keys"] == 1
    assert db.execute("SELECT totp_secret_enc FROM factors").fetchone()[0] == before
    assert container.reencryption.usage()["gone"] == {"totp_secrets": 1}
