"""Rolling out a new encryption key across replicas (README, "A fleet of replicas"): first as
a decrypt-only key everywhere, then as the encrypting one (AUTHSVC_ENCRYPTION_KEY_ID). At every
step, the replicas of the old and the new configuration run side by side on one database and
each reads what the other wrote: codes sent by one and checked by the other, TOTP secrets,
undelivered messages, signing keys."""

from __future__ import annotations

import base64
import secrets
import time

import pytest

from authsvc.config import Settings
from authsvc.errors import ConfigError
from tests.fleet.flows import kid_of
from tests.support.flows import enroll_totp, login_password, start_registration
from tests.support.messages import extract_code

NEW = ("t2", secrets.token_bytes(32))


def _stages(settings):
    old = settings.encryption_keys[0]
    return {
        "before": (old,),
        "decrypt-only": (old, NEW),  # step 1: the new key is known everywhere, the old one encrypts
        "encrypting": (NEW, old),  # step 2: the new key encrypts, the old one still decrypts
    }


def _replica(make_app, settings, keys):
    app = make_app(settings.replace(encryption_keys=keys), start_outbox=False)
    return app, app.test_client(), app.extensions["authsvc"]


def _written_by_x_read_by_y(x, y, twilio, smtp, db):
    """Everything secret that replica x writes, replica y uses; raises AssertionError if not."""
    (_, xc, xs), (_, yc, ys) = x, y
    # codes: made (MAC'd) and sent by x, the messages encrypted in the outbox by x, sent by y
    resp, email, phone = start_registration(xc)
    assert resp.status_code == 202, resp.get_json()
    ys.outbox.deliver_due()
    sms, mail = twilio.wait_for(lambda m: m["to"] == phone), smtp.wait_for(lambda m: m["to"] == email)
    verified = yc.post(f"/v1/registrations/{resp.get_json()['registration_id']}/verify",
                       json={"phone_code": extract_code(sms["body"]), "email_code": extract_code(mail["body"])})
    assert verified.status_code == 201, verified.get_json()
    # a TOTP secret enrolled through x, checked by y
    factor = enroll_totp(xc, verified.get_json()["enrollment_token"])
    # a signing key made by x (its private half encrypted by x), signing on y
    kid = xs.keys.rotate(activate_in=0)
    db.execute("UPDATE signing_keys SET activate_at = clock_timestamp() WHERE kid = %s", (kid,))
    ys.keys.refresh()
    first = login_password(yc, {"email": email, "password": "correct horse battery staple 42"})
    assert first.status_code == 200, first.get_json()
    done = yc.post("/v1/login/mfa", json={"mfa_token": first.get_json()["mfa_token"], "method": "totp",
                                          "code": factor["totp"].at(time.time() + 30)})  # not the enrolment's code
    assert done.status_code == 200, done.get_json()
    assert kid_of(done.get_json()["access_token"]) == kid


@pytest.mark.parametrize("step", [("before", "decrypt-only"), ("decrypt-only", "encrypting")])
def test_each_step_of_the_two_phase_roll_out_keeps_replicas_readable_both_ways(
        step, make_app, settings, twilio, smtp, db):
    stages = _stages(settings)
    a = _replica(make_app, settings, stages[step[0]])
    b = _replica(make_app, settings, stages[step[1]])
    _written_by_x_read_by_y(a, b, twilio, smtp, db)
    _written_by_x_read_by_y(b, a, twilio, smtp, db)


def test_skipping_the_decrypt_only_step_leaves_old_replicas_unable_to_read(make_app, settings, twilio, smtp, db):
    """Why two steps: putting the new key first in one roll-out (as the README used to say)
    lets updated replicas write what the others cannot read."""
    stages = _stages(settings)
    updated = _replica(make_app, settings, stages["encrypting"])
    old = _replica(make_app, settings, stages["before"])
    with pytest.raises(AssertionError):
        _written_by_x_read_by_y(updated, old, twilio, smtp, db)


def _env(keys, **extra):
    return {
        "AUTHSVC_DATABASE_URL": "postgresql://x@127.0.0.1/x", "AUTHSVC_SMS_PROVIDER": "twilio",
        "AUTHSVC_TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "AUTHSVC_TWILIO_AUTH_TOKEN": secrets.token_hex(20),
        "AUTHSVC_TWILIO_FROM": "+15005550006", "AUTHSVC_SMTP_URL": "smtp://127.0.0.1:1025",
        "AUTHSVC_SMS_COUNTRIES": "JP", "AUTHSVC_PUBLIC_URL": "https://auth.test",
        "AUTHSVC_ENCRYPTION_KEY": ",".join(f"{kid}:{base64.b64encode(k).decode()}" for kid, k in keys), **extra,
    }


def test_encryption_key_id_chooses_the_encrypting_key_without_reordering_the_secret(settings):
    old = settings.encryption_keys[0]
    listed = Settings.from_env(_env((old, NEW)))
    assert [kid for kid, _ in listed.encryption_keys] == ["t1", "t2"]  # the first listed encrypts
    chosen = Settings.from_env(_env((old, NEW), AUTHSVC_ENCRYPTION_KEY_ID="t2"))
    assert [kid for kid, _ in chosen.encryption_keys] == ["t2", "t1"] and chosen.encryption_key_id == "t2"
    with pytest.raises(ConfigError, match="AUTHSVC_ENCRYPTION_KEY_ID"):
        Settings.from_env(_env((old, NEW), AUTHSVC_ENCRYPTION_KEY_ID="t3"))
