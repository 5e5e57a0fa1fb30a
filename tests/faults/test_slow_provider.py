"""Slow provider: with SMTP and Twilio answering late, several senders draining one outbox
deliver every message exactly once (rows are leased one at a time, right before they are
sent), a stopped sender finishes the message in flight and leaves nothing leased behind, and
an email sent twice after a crash carries the same Message-ID (its idempotency key)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from authsvc.adapters.email import SmtpEmail
from authsvc.adapters.sms import TwilioSms
from authsvc.security.crypto import Cipher
from authsvc.services.platform.outbox import Outbox
from authsvc.store import Store

PROVIDER_DELAY = 0.5  # seconds per message, SMS and email alike
LEASE = 3.0  # seconds: well above one send, well below a batch of sends


@pytest.fixture
def senders(settings, twilio, smtp):
    """Independent senders (own pool each, as separate worker processes have)."""
    made: list[tuple[Outbox, Store]] = []

    def make() -> Outbox:
        store = Store(settings.database_url)
        outbox = Outbox(
            store,
            Cipher(settings.encryption_keys),
            sms=TwilioSms(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from,
                          api_base=settings.twilio_api_base),
            email=SmtpEmail(settings.smtp_url, settings.email_from),
            webhooks=None,
            lease_seconds=LEASE,
        )
        made.append((outbox, store))
        return outbox

    yield make
    for outbox, store in made:
        outbox.stop()
        store.close()


def _enqueue(outbox: Outbox, n: int) -> tuple[list[str], list[str]]:
    """n SMS rows, n email rows and n bundles (SMS + email): 2n SMS and 2n emails in all."""
    phones = [f"+8190{i:08d}" for i in range(2 * n)]
    emails = [f"user{i}@example.com" for i in range(2 * n)]
    with outbox._store.transaction() as tx:
        for i in range(n):
            outbox.sms(tx, phones[i], f"Your code is {100000 + i}.")
            outbox.email(tx, emails[i], "Your code", f"Your code is {200000 + i}.")
            outbox.bundle(tx, [
                {"kind": "sms", "to": phones[n + i], "body": f"Your code is {300000 + i}."},
                {"kind": "email", "to": emails[n + i], "subject": "Your code", "body": f"Your code is {400000 + i}."},
            ])
    return phones, emails


def _wait_drained(db, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]:
        assert time.monotonic() < deadline, "outbox not drained in time"
        time.sleep(0.1)


def test_several_senders_and_a_slow_provider_send_each_message_once(senders, twilio, smtp, db):
    twilio.delay = smtp.delay = PROVIDER_DELAY
    outboxes = [senders() for _ in range(3)]
    phones, emails = _enqueue(outboxes[0], 8)  # 16 SMS + 16 emails, 24 rows
    started = time.monotonic()
    for outbox in outboxes:
        outbox.start(idle_seconds=0.1)
    _wait_drained(db, timeout=90)
    drained = time.monotonic() - started
    for outbox in outboxes:
        assert outbox.stop()
    time.sleep(2 * PROVIDER_DELAY)  # anything still in flight would land now

    sms = Counter(m["to"] for m in twilio.snapshot())
    mail = Counter(m["to"] for m in smtp.snapshot())
    print(f"\nslow provider ({PROVIDER_DELAY}s/message, 3 senders, lease {LEASE}s): 32 messages in "
          f"{drained:.1f}s; SMS sent {sum(sms.values())}, emails sent {sum(mail.values())}")
    assert sms == Counter(phones), "every SMS exactly once"
    assert mail == Counter(emails), "every email exactly once"
    ids = [m["message_id"] for m in smtp.snapshot()]
    assert len(set(ids)) == len(ids)
    undelivered = db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
    assert undelivered == 0


def test_stop_finishes_the_message_in_flight_and_leaves_nothing_leased(senders, twilio, smtp, db):
    twilio.delay = smtp.delay = 1.0
    first = senders()
    phones, emails = _enqueue(first, 2)  # 4 SMS + 4 emails in 6 rows
    first.start(idle_seconds=0.1)
    twilio.wait_for(timeout=10)  # the first message is at the provider
    t0 = time.monotonic()
    assert first.stop()
    stopped_in = time.monotonic() - t0
    sent = len(twilio.snapshot()) + len(smtp.snapshot())
    delivered = db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0]
    leased = db.execute(
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND available_at > now()"
    ).fetchone()[0]
    assert stopped_in < 2.5, stopped_in  # one message (1 s), not the rest of the outbox
    assert 1 <= sent < 8 and delivered >= 1
    assert leased == 0, "a stopped sender leaves no row leased (the next sender need not wait)"

    second = senders()
    while second.deliver_due():
        pass
    assert Counter(m["to"] for m in twilio.snapshot()) == Counter(phones)
    assert Counter(m["to"] for m in smtp.snapshot()) == Counter(emails)


def test_a_crash_between_send_and_record_resends_with_the_same_message_id(senders, smtp, db):
    outbox = senders()
    with outbox._store.transaction() as tx:
        outbox.email(tx, "ann@example.com", "Your code", "Your code is 123456.")
        outbox.bundle(tx, [{"kind": "email", "to": "bob@example.com", "subject": "Hi", "body": "Code 654321."}])
    saved = db.execute("SELECT id, payload FROM outbox ORDER BY id").fetchall()
    while outbox.deliver_due():
        pass
    # The process died after the provider accepted the messages, before the database recorded it:
    for row_id, payload in saved:
        db.execute("UPDATE outbox SET delivered_at = NULL, payload = %s, lease_token = NULL, "
                   "available_at = now() WHERE id = %s", (payload, row_id))
    while outbox.deliver_due():
        pass
    got = smtp.snapshot()
    assert sorted(m["to"] for m in got) == ["ann@example.com"] * 2 + ["bob@example.com"] * 2
    for to in ("ann@example.com", "bob@example.com"):
        ids = {m["message_id"] for m in got if m["to"] == to}
        assert len(ids) == 1 and ids.pop().endswith("@auth.test>"), "the same Message-ID both times"


def test_a_sender_that_lost_its_lease_sends_nothing_more_of_the_row(senders, twilio, smtp, db):
    """A bundle whose lease passed to another sender while a message was at the provider:
    the first sender records nothing and sends nothing more of it."""
    twilio.delay = 1.5
    slow = senders()
    with slow._store.transaction() as tx:
        slow.bundle(tx, [
            {"kind": "sms", "to": "+819000000001", "body": "Code 111111."},
            {"kind": "email", "to": "cat@example.com", "subject": "Hi", "body": "Code 222222."},
        ])
    worker = threading.Thread(target=slow.deliver_due)
    worker.start()
    twilio.wait_for(timeout=10)
    # Meanwhile the lease passes to another sender (as if the send had taken longer than it).
    db.execute("UPDATE outbox SET lease_token = gen_random_uuid()")
    worker.join(10)
    assert not smtp.snapshot(), "the first sender stopped: the row is no longer its own"
    row = db.execute("SELECT delivered_at, lease_token IS NOT NULL FROM outbox").fetchone()
    assert row == (None, True)
