"""SMS pumping: number type and country checks, Twilio Lookup, and the hourly SMS caps
(per number, account, client, network, country and in total) with the sms.cap_reached webhook.
Real PostgreSQL, the real twilio client against the local fake, the local SMTP sink."""

from __future__ import annotations

import threading
import time

import pytest

from authsvc.config import Settings
from authsvc.errors import ConfigError
from authsvc.services.core.sms_policy import network_keys
from tests.support.concurrency import race
from tests.support.flows import bearer, login_password, new_email, new_phone, register, start_registration
from tests.support.messages import extract_code
from tests.test_recovery import session, step_up_contact, user  # noqa: F401 - fixtures
from tests.test_webhooks import SECRET, receiver  # noqa: F401 - fixture

PREMIUM_GB = "+449012345678"
PREMIUM_US = "+19005550123"
SATELLITE = "+881612345678"
FOREIGN_MOBILE = "+33612345678"  # France: not in the allowed countries
JP_FIXED = "+81312345678"
GB_PAGER = "+447640123456"
US_NUMBER = "+12015550123"  # FIXED_LINE_OR_MOBILE: phonenumbers cannot tell offline


def _count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _sms_to(twilio, phone: str, settle: float = 0.4) -> list[dict]:
    time.sleep(settle)
    return [m for m in twilio.snapshot() if m["to"] == phone]


def _settled_count(twilio, phone: str, expect: int, match: str = "") -> int:
    """How many SMS reached ``phone`` (containing ``match``), once ``expect`` arrived (or 10 s
    passed) and a little longer, so one too many would be seen."""
    count = lambda: len([m for m in twilio.snapshot() if m["to"] == phone and match in m["body"]])  # noqa: E731
    deadline = time.monotonic() + 10
    while count() < expect and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)
    return count()


def _delivered(twilio, sent: list[str], blocked: list[str]) -> None:
    """Every number in ``sent`` got its SMS, and (once those arrived) none in ``blocked`` did."""
    for phone in sent:
        twilio.wait_for(lambda m, p=phone: m["to"] == p)
    time.sleep(0.3)
    got = {m["to"] for m in twilio.snapshot()}
    assert [p for p in blocked if p in got] == []


def _register_from(client, ip: str, **kw):
    email, phone = kw.pop("email", None) or new_email(), kw.pop("phone", None) or new_phone()
    r = client.post("/v1/registrations", json={"email": email, "phone": phone,
                                               "password": "correct horse battery staple 42"},
                    environ_base={"REMOTE_ADDR": ip})
    assert r.status_code == 202, r.get_json()
    return phone


def _capped_app(make_app, settings, **caps):
    return make_app(settings.replace(rate_limits_enabled=False, **caps))


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("phone", [PREMIUM_GB, PREMIUM_US, SATELLITE, FOREIGN_MOBILE, JP_FIXED, GB_PAGER])
def test_registration_refuses_numbers_that_cannot_get_our_sms(make_app, settings, twilio, smtp, db, phone):
    client = make_app(settings.replace(sms_countries=("JP", "US", "GB"))).test_client()
    resp, _, _ = start_registration(client, phone=phone)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/problem+json"
    problem = resp.get_json()
    assert problem["code"] == "unsupported_phone"
    assert problem["type"] == "https://authsvc.dev/problems/unsupported_phone"
    assert [e["field"] for e in problem["errors"]] == ["phone"]
    # nothing was stored, queued or sent
    assert _count(db, "registrations") == _count(db, "outbox") == _count(db, "sms_sends") == 0
    assert _sms_to(twilio, phone) == [] and twilio.lookups == []


def test_the_refusal_names_the_kind_of_number(client):
    premium = start_registration(client, phone=PREMIUM_US)[0].get_json()
    assert "premium-rate" in premium["errors"][0]["message"]
    foreign = start_registration(client, phone=FOREIGN_MOBILE)[0].get_json()
    assert "country" in foreign["errors"][0]["message"]
    assert "JP" in foreign["detail"] and "US" in foreign["detail"]


def test_mobile_and_us_numbers_are_accepted_offline(client, twilio):
    for phone in (new_phone(), US_NUMBER):
        resp, _, _ = start_registration(client, phone=phone)
        assert resp.status_code == 202, resp.get_json()
        twilio.wait_for(lambda m, p=phone: m["to"] == p)
    assert twilio.lookups == []  # Lookup is off by default


def test_phone_change_refuses_premium_numbers_and_keeps_the_step_up_token(client, twilio, user, session, db):  # noqa: F811
    auth = bearer(session["access_token"])
    token = step_up_contact(client, user, session)
    r = client.post("/v1/account/phone", json={"phone": PREMIUM_US}, headers={**auth, "X-Step-Up-Token": token})
    assert r.status_code == 400 and r.get_json()["code"] == "unsupported_phone"
    assert r.get_json()["errors"][0]["field"] == "phone"
    assert _count(db, "contact_changes") == 0
    # the refusal changed nothing: the same step-up token still works for a mobile number
    phone = new_phone()
    r = client.post("/v1/account/phone", json={"phone": phone}, headers={**auth, "X-Step-Up-Token": token})
    assert r.status_code == 202, r.get_json()
    twilio.wait_for(lambda m: m["to"] == phone)


def test_stored_numbers_outside_the_allowed_countries_get_nothing(make_app, settings, twilio, smtp, db):
    account = register(make_app(settings).test_client(), twilio, smtp)
    client = make_app(settings.replace(sms_countries=("US",))).test_client()  # the operator narrowed the list
    twilio.clear()
    r = login_password(client, account)
    assert r.status_code == 200 and r.get_json()["methods"] == ["sms"]
    assert client.post("/v1/password-resets", json={"email": account["email"]}).status_code == 202
    assert _sms_to(twilio, account["phone"]) == []
    assert _count(db, "sms_sends") == 1  # the registration's


# ----------------------------------------------------------------------------- Twilio Lookup
def test_lookup_refuses_landlines_and_caches_answers(make_app, settings, twilio, db):
    client = make_app(settings.replace(twilio_lookup=True, rate_limits_enabled=False)).test_client()
    twilio.line_types[US_NUMBER] = "landline"
    resp, _, _ = start_registration(client, phone=US_NUMBER)
    assert resp.status_code == 400 and resp.get_json()["code"] == "unsupported_phone"
    assert twilio.lookups == [{"number": US_NUMBER, "fields": "line_type_intelligence"}]
    assert _sms_to(twilio, US_NUMBER) == []

    mobile = new_phone()
    resp, _, _ = start_registration(client, phone=mobile)
    assert resp.status_code == 202
    twilio.wait_for(lambda m: m["to"] == mobile)
    # answers are kept: asking again about either number costs no new Lookup
    start_registration(client, phone=mobile)
    start_registration(client, phone=US_NUMBER)
    assert len(twilio.lookups) == 2
    assert dict(db.execute("SELECT phone, line_type FROM phone_line_types").fetchall()) == {
        US_NUMBER: "landline", mobile: "mobile"}


@pytest.mark.parametrize("line_type", ["nonFixedVoip", "premium", "tollFree", "pager", "unknown"])
def test_lookup_accepts_only_mobile_lines(make_app, settings, twilio, line_type):
    client = make_app(settings.replace(twilio_lookup=True)).test_client()
    phone = new_phone()
    twilio.line_types[phone] = line_type
    assert start_registration(client, phone=phone)[0].status_code == 400


def test_offline_refusals_cost_no_lookup(make_app, settings, twilio):
    client = make_app(settings.replace(twilio_lookup=True)).test_client()
    assert start_registration(client, phone=PREMIUM_US)[0].status_code == 400
    assert twilio.lookups == []


def test_lookup_outage_falls_back_to_the_offline_check(make_app, settings, twilio):
    app = make_app(settings.replace(twilio_lookup=True))
    twilio.fail_next(1, status=503)
    phone = new_phone()
    resp, _, _ = start_registration(app.test_client(), phone=phone)
    assert resp.status_code == 202
    twilio.wait_for(lambda m: m["to"] == phone)
    text = app.extensions["authsvc"].metrics.render()[0].decode()
    assert 'authsvc_sms_lookups_total{result="error"} 1.0' in text


def test_the_host_rewrite_covers_lookups_twilio_com(twilio):
    from authsvc.adapters.sms import TwilioLookup

    lookup = TwilioLookup(twilio.account_sid, twilio.auth_token, api_base=twilio.base_url)
    twilio.line_types["+14155552671"] = "fixedVoip"
    assert lookup.line_type("+14155552671") == "fixedVoip"
    assert lookup.line_type("+819012345678") == "mobile"
    assert [x["number"] for x in twilio.lookups] == ["+14155552671", "+819012345678"]


# ----------------------------------------------------------------------------- caps
def test_per_number_cap_sends_nothing_past_it_and_alerts_once(make_app, settings, twilio, smtp, db, receiver):  # noqa: F811
    app = _capped_app(make_app, settings.replace(webhook_url=receiver.url, webhook_secret=SECRET),
                      sms_number_hourly_cap=2)
    client = app.test_client()
    phone = new_phone()
    answers = [start_registration(client, phone=phone)[0] for _ in range(4)]
    assert [a.status_code for a in answers] == [202] * 4  # the answer is unchanged past the cap
    assert {frozenset(a.get_json()) for a in answers} == {frozenset({"registration_id", "expires_in"})}
    assert _settled_count(twilio, phone, 2) == 2
    event = receiver.wait_for("sms.cap_reached")[0]
    assert event["data"] == {"cap": "number", "limit": 2, "window_seconds": 3600, "purpose": "registration"}
    time.sleep(0.3)
    assert [e[0]["type"] for e in receiver.events].count("sms.cap_reached") == 1  # once an hour, not per SMS
    text = app.extensions["authsvc"].metrics.render()[0].decode()
    assert 'authsvc_sms_total{decision="cap_number",purpose="registration"} 2.0' in text
    assert 'authsvc_sms_total{decision="sent",purpose="registration"} 2.0' in text
    # an hour later the cap alerts again
    db.execute("UPDATE sms_cap_alerts SET fired_at = now() - interval '61 minutes'")
    db.execute("UPDATE sms_sends SET created_at = now() - interval '61 minutes'")
    db.execute("UPDATE sms_cap_counts SET minute = minute - interval '61 minutes'")  # the counters' hour
    db.execute("UPDATE registrations SET created_at = created_at - interval '61 minutes'")
    start_registration(client, phone=phone)
    start_registration(client, phone=phone)
    start_registration(client, phone=phone)
    assert _settled_count(twilio, phone, 4) == 4
    deadline = time.monotonic() + 5
    while [e[0]["type"] for e in receiver.events].count("sms.cap_reached") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e[0]["type"] for e in receiver.events].count("sms.cap_reached") == 2


def test_sms_login_path_is_capped_per_account(make_app, settings, twilio, smtp, db):
    app = _capped_app(make_app, settings, sms_account_hourly_cap=3)
    client = app.test_client()
    account = register(client, twilio, smtp)  # the registration SMS counts for no account
    twilio.clear()
    answers = [login_password(client, account) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert {tuple(a.get_json()["methods"]) for a in answers} == {("sms",)}  # unchanged past the cap
    assert _settled_count(twilio, account["phone"], 3) == 3


def test_sms_login_path_is_capped_per_number(make_app, settings, twilio, smtp):
    client = _capped_app(make_app, settings, sms_number_hourly_cap=3).test_client()
    account = register(client, twilio, smtp)  # one SMS to the number already
    twilio.clear()
    for _ in range(4):
        assert login_password(client, account).status_code == 200
    assert _settled_count(twilio, account["phone"], 2) == 2


def test_a_failed_password_never_causes_an_sms(client, twilio, smtp, db):
    account = register(client, twilio, smtp)
    twilio.clear()
    sends = _count(db, "sms_sends")
    for _ in range(3):
        r = client.post("/v1/login", json={"email": account["email"], "password": "wrong password 123"})
        assert r.status_code == 401
    assert _sms_to(twilio, account["phone"]) == [] and _count(db, "sms_sends") == sends


def test_per_client_cap_ipv4_address_and_ipv6_64(make_app, settings, twilio, smtp):
    client = _capped_app(make_app, settings, sms_client_hourly_cap=2).test_client()
    sent = [_register_from(client, "198.51.100.7") for _ in range(3)]
    other = _register_from(client, "198.51.100.8")  # same /24, another client
    v6 = [_register_from(client, ip) for ip in ("2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1:ffff::3")]
    v6_other = _register_from(client, "2001:db8:1:2::1")  # another /64
    _delivered(twilio, sent=[*sent[:2], other, *v6[:2], v6_other], blocked=[sent[2], v6[2]])


def test_per_network_cap_ipv4_24_and_ipv6_48(make_app, settings, twilio, smtp):
    client = _capped_app(make_app, settings, sms_network_hourly_cap=2).test_client()
    v4 = [_register_from(client, f"203.0.113.{i}") for i in (1, 2, 3)]
    v4_other = _register_from(client, "203.0.114.1")
    v6 = [_register_from(client, ip) for ip in ("2001:db8:5:1::1", "2001:db8:5:2::1", "2001:db8:5:3::1")]
    v6_other = _register_from(client, "2001:db8:6:1::1")  # another /48
    _delivered(twilio, sent=[*v4[:2], v4_other, *v6[:2], v6_other], blocked=[v4[2], v6[2]])


def test_per_country_cap_alerts_with_the_country(make_app, settings, twilio, smtp, receiver):  # noqa: F811
    client = _capped_app(make_app, settings.replace(webhook_url=receiver.url, webhook_secret=SECRET),
                         sms_country_hourly_cap=2).test_client()
    jp = [_register_from(client, f"192.0.2.{i}") for i in (1, 2, 3)]
    us = _register_from(client, "192.0.2.9", phone="+12015550100")
    _delivered(twilio, sent=[*jp[:2], us], blocked=[jp[2]])
    event = receiver.wait_for("sms.cap_reached")[0]
    assert event["data"]["cap"] == "country" and event["data"]["country"] == "JP"


def test_global_hourly_cap(make_app, settings, twilio, smtp, db):
    client = _capped_app(make_app, settings, sms_hourly_cap=3).test_client()
    phones = [_register_from(client, f"198.51.{i}.1") for i in range(5)]
    time.sleep(0.5)
    got = {m["to"] for m in twilio.snapshot()}
    assert sum(p in got for p in phones) == 3
    assert _count(db, "sms_sends") == 3


def test_reset_sms_is_capped(make_app, settings, twilio, smtp):
    client = _capped_app(make_app, settings, sms_account_hourly_cap=2).test_client()
    account = register(client, twilio, smtp)
    twilio.clear()
    for _ in range(3):
        assert client.post("/v1/password-resets", json={"email": account["email"]}).status_code == 202
    assert _settled_count(twilio, account["phone"], 2, "reset code") == 2


def test_concurrent_requests_cannot_pass_a_cap_together(make_app, settings, twilio, smtp, db):
    app = _capped_app(make_app, settings, sms_client_hourly_cap=3)
    statuses = race([lambda: start_registration(app.test_client())[0].status_code] * 10)
    assert statuses == [202] * 10
    assert _count(db, "sms_sends") == 3
    deadline = time.monotonic() + 15  # every bundle delivered: all 10 email codes arrived
    while len(smtp.snapshot()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(smtp.snapshot()) == 10
    assert len(twilio.snapshot()) == 3


def _permit_in_tx(container, phone: str, *, hold: float = 0.0, fail: bool = False) -> bool:
    """One SMS decision in its own transaction, kept open ``hold`` seconds after deciding (so a
    decision that did not wait for the others would overlap them), rolled back with ``fail``."""
    try:
        with container.store.transaction() as tx:
            allowed = container.sms.permit(tx, to=phone, purpose="registration", ip="198.51.100.7")
            time.sleep(hold)
            if fail:
                raise RuntimeError("the request failed after its SMS decision")
            return allowed
    except RuntimeError:
        return allowed


def test_racing_decisions_never_pass_the_global_cap_together(make_app, settings, db):
    """20 decisions on distinct numbers at once, each holding its transaction open a moment after
    deciding: exactly the global cap's worth go through, and only those are counted."""
    container = _capped_app(make_app, settings, sms_hourly_cap=5).extensions["authsvc"]
    results = race([lambda: _permit_in_tx(container, new_phone(), hold=0.05) for _ in range(20)])
    assert sorted(results) == [False] * 15 + [True] * 5
    assert _count(db, "sms_sends") == 5
    assert db.execute("SELECT sum(sent) FROM sms_cap_counts WHERE scope = 'total:*'").fetchone()[0] == 5


def test_a_broad_cap_in_shards_is_exact_near_the_cap(make_app, settings, db):
    """The global cap of 800 has 8 lock rows: far below it decisions do not wait for each other;
    within 8 of it they count exactly. 796 sends are in the hour: of 20 racing decisions exactly
    4 go through."""
    container = _capped_app(make_app, settings, sms_hourly_cap=800, sms_country_hourly_cap=10**6,
                            sms_network_hourly_cap=10**6, sms_client_hourly_cap=10**6).extensions["authsvc"]
    db.execute("INSERT INTO sms_cap_counts (scope, shard, minute, sent) "
               "SELECT 'total:*', s, date_trunc('minute', now()) - interval '5 minutes', 100 "
               "FROM generate_series(0, 7) s")
    db.execute("UPDATE sms_cap_counts SET sent = 96 WHERE shard = 7")
    results = race([lambda: _permit_in_tx(container, new_phone(), hold=0.05) for _ in range(20)])
    assert sorted(results) == [False] * 16 + [True] * 4
    assert db.execute("SELECT sum(sent) FROM sms_cap_counts WHERE scope = 'total:*'").fetchone()[0] == 800


def test_far_below_a_broad_cap_decisions_do_not_wait_for_each_other(make_app, settings, db):
    container = _capped_app(make_app, settings, sms_hourly_cap=1000, sms_country_hourly_cap=1000,
                            sms_network_hourly_cap=10**6, sms_client_hourly_cap=10**6).extensions["authsvc"]
    assert _permit_in_tx(container, new_phone())  # the scopes' first use makes their rows
    done = threading.Event()
    with container.store.transaction() as tx:  # an open decision holds one shard of each scope
        assert container.sms.permit(tx, to=new_phone(), purpose="registration", ip="198.51.100.7")
        other = threading.Thread(target=lambda: _permit_in_tx(container, new_phone()) and done.set())
        other.start()
        other.join(10)
        assert done.is_set()  # decided and committed while the first is still open
    assert _count(db, "sms_sends") == 3


def test_a_rolled_back_decision_leaves_no_count(make_app, settings, db):
    container = _capped_app(make_app, settings, sms_number_hourly_cap=1).extensions["authsvc"]
    phone = new_phone()
    assert _permit_in_tx(container, phone, fail=True) is True  # allowed, then the request failed
    assert _count(db, "sms_sends") == 0
    assert _permit_in_tx(container, phone) is True  # the cap of 1 is still free
    assert _permit_in_tx(container, phone) is False


def test_a_send_counts_for_a_whole_hour(make_app, settings, db):
    container = _capped_app(make_app, settings, sms_number_hourly_cap=1).extensions["authsvc"]
    phone = new_phone()
    assert _permit_in_tx(container, phone) is True
    db.execute("UPDATE sms_cap_counts SET minute = minute - interval '59 minutes'")
    assert _permit_in_tx(container, phone) is False  # 59 minutes on: still within the hour
    db.execute("UPDATE sms_cap_counts SET minute = minute - interval '2 minutes'")
    assert _permit_in_tx(container, phone) is True  # 61 minutes on: a new hour


def test_a_decision_takes_no_advisory_lock(make_app, settings, db):
    """Only row locks on its own caps' scopes (the global lock it replaced serialised everything)."""
    container = _capped_app(make_app, settings).extensions["authsvc"]
    with container.store.transaction() as tx:
        assert container.sms.permit(tx, to=new_phone(), purpose="registration", ip="198.51.100.7")
        pid = tx._conn.info.backend_pid  # this request's own locks (other tests share the server)
        assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                          (pid,)).fetchone()[0] == 0
        held = db.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                          "WHERE c.relname = 'sms_cap_scopes' AND l.mode = 'RowShareLock' AND l.pid = %s",
                          (pid,)).fetchone()[0]
        assert held == 1


def test_network_keys():
    assert network_keys("198.51.100.7") == ("198.51.100.7", "198.51.100.0/24")
    assert network_keys("::ffff:198.51.100.7") == ("198.51.100.7", "198.51.100.0/24")
    assert network_keys("2001:db8:1:2:3:4:5:6") == ("2001:db8:1:2::/64", "2001:db8:1::/48")
    assert network_keys(None) == (None, None)
    assert network_keys("garbage") == ("raw:garbage", None)


# ----------------------------------------------------------------------------- a taken email
def test_taken_email_sends_the_sms_either_way_and_notifies_the_owner_once_a_day(client, twilio, smtp, db):
    owner = register(client, twilio, smtp)
    twilio.clear()
    smtp.clear()
    phones = [new_phone(), new_phone()]
    rids = []
    for phone in phones:
        resp, _, _ = start_registration(client, email=owner["email"], phone=phone)
        assert resp.status_code == 202
        rids.append(resp.get_json()["registration_id"])
    # the requester's phone gets a code exactly as for a free email...
    codes = [extract_code(twilio.wait_for(lambda m, p=p: m["to"] == p)["body"]) for p in phones]
    # ...but the code does not verify, and the owner got one notice, not a code
    for rid, code in zip(rids, codes, strict=True):
        r = client.post(f"/v1/registrations/{rid}/verify", json={"phone_code": code, "email_code": code})
        assert r.status_code == 400 and r.get_json()["code"] == "verification_failed"
    time.sleep(0.4)
    mails = [m for m in smtp.snapshot() if m["to"] == owner["email"]]
    assert len(mails) == 1 and "already has an account" in mails[0]["body"]
    # a day later the owner hears of it again
    db.execute("UPDATE registrations SET created_at = created_at - interval '25 hours'")
    start_registration(client, email=owner["email"])
    smtp.wait_for(lambda m: m["to"] == owner["email"] and "already has an account" in m["body"])
    assert _count(db, "accounts") == 1


# ----------------------------------------------------------------------------- configuration
def _prod_env(**extra: str) -> dict[str, str]:
    import base64
    import secrets

    env = {
        "AUTHSVC_DATABASE_URL": "postgresql://localhost/x",
        "AUTHSVC_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUTHSVC_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "AUTHSVC_TWILIO_AUTH_TOKEN": secrets.token_hex(20),
        "AUTHSVC_TWILIO_FROM": "+15005550006",
        "AUTHSVC_SMTP_URL": "smtp://127.0.0.1:1025",
        "AUTHSVC_PUBLIC_URL": "https://auth.example",
    }
    env.update({"AUTHSVC_" + k: v for k, v in extra.items()})
    return env


def test_sms_countries_are_required_in_production_and_checked():
    with pytest.raises(ConfigError, match="AUTHSVC_SMS_COUNTRIES is missing"):
        Settings.from_env(_prod_env())
    with pytest.raises(ConfigError, match="'XX' is not an ISO 3166"):
        Settings.from_env(_prod_env(SMS_COUNTRIES="JP,XX"))
    s = Settings.from_env(_prod_env(SMS_COUNTRIES=" jp, US ,jp", SMS_HOURLY_CAP="50", TWILIO_LOOKUP="true"))
    assert s.sms_countries == ("JP", "US") and s.twilio_lookup is True
    assert s.sms_hourly_cap == s.sms_country_hourly_cap == 50  # the country cap defaults to the global one
    assert Settings.from_env(_prod_env(SMS_COUNTRIES="JP", SMS_COUNTRY_HOURLY_CAP="7")).sms_country_hourly_cap == 7
    with pytest.raises(ConfigError, match="AUTHSVC_SMS_HOURLY_CAP must be at least 1"):
        Settings.from_env(_prod_env(SMS_COUNTRIES="JP", SMS_HOURLY_CAP="0"))


def test_dev_fills_sms_countries_and_lookup_needs_twilio(tmp_path):
    env = {"AUTHSVC_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env, dev=True).sms_countries == ("JP", "US")
    with pytest.raises(ConfigError, match="TWILIO_LOOKUP=true needs"):
        Settings.from_env({**env, "AUTHSVC_TWILIO_LOOKUP": "true"}, dev=True)
