"""Signed webhooks from the transactional outbox, and the outbox worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from authsvc import cli
from authsvc.adapters.webhooks import sign
from tests.support.flows import register, start_registration

SECRET = "wh-" + "k7Qe9xT2mP4vL8sR1zN6bY3cH5jD0fG"


class Receiver:
    def __init__(self) -> None:
        self.events: list[tuple[dict, str, bytes]] = []
        self.fail = 0
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _app(self, environ, start_response):
        req = Request(environ)
        if self.fail:
            self.fail -= 1
            return Response("down", status=503)(environ, start_response)
        body = req.get_data()
        self.events.append((json.loads(body), req.headers.get("Authsvc-Signature", ""), body))
        return Response("", status=204)(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def wait_for(self, event_type: str, timeout: float = 5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event[0]["type"] == event_type:
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no {event_type} event; got {[e[0]['type'] for e in self.events]}")


@pytest.fixture
def receiver():
    r = Receiver()
    r._thread.start()
    yield r
    r._server.shutdown()


def test_events_are_signed_and_delivered(make_app, settings, receiver, twilio, smtp):
    app = make_app(settings.replace(webhook_url=receiver.url, webhook_secret=SECRET))
    account = register(app.test_client(), twilio, smtp)
    event, signature, body = receiver.wait_for("account.registered")
    assert event["data"] == {"account_id": account["account_id"]} and event["id"]
    t, v1 = (part.split("=", 1)[1] for part in signature.split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected) and abs(int(t) - time.time()) < 60
    assert sign("other-secret", int(t), body) != signature


def test_a_webhook_outage_is_retried_not_dropped(make_app, settings, receiver, twilio, smtp, db):
    receiver.fail = 1
    app = make_app(settings.replace(webhook_url=receiver.url, webhook_secret=SECRET))
    register(app.test_client(), twilio, smtp)
    deadline = time.monotonic() + 5
    while not db.execute("SELECT count(*) FROM outbox WHERE kind = 'webhook' AND last_error IS NOT NULL").fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    db.execute("UPDATE outbox SET available_at = now() WHERE delivered_at IS NULL")
    app.extensions["authsvc"].outbox.deliver_due()
    receiver.wait_for("account.registered")
    assert db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0] == 0


def test_worker_delivers_what_the_request_left_behind(make_app, settings, cli_env, twilio, smtp, db):
    app = make_app(settings, start_outbox=False)  # as if the process died right after commit
    resp, email, phone = start_registration(app.test_client())
    assert resp.status_code == 202
    time.sleep(0.2)
    assert twilio.snapshot() == []
    assert db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0] == 1  # SMS + email
    result = CliRunner().invoke(cli.main, ["worker", "--once"], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0 and "delivered 1" in result.output
    twilio.wait_for(lambda m: m["to"] == phone)
    smtp.wait_for(lambda m: m["to"] == email)
    payloads = db.execute("SELECT payload FROM outbox").fetchall()
    assert all(p[0] == "" for p in payloads)  # blanked once delivered
