"""Logs: JSON lines on stdout, request ids, the access log, no secrets, quiet libraries."""

from __future__ import annotations

import json
import logging
import re

import pytest

from authsvc import logs
from tests.support.flows import register


@pytest.fixture
def json_logs(capsys):
    """authsvc's logging set up as the CLI does; yields a reader of the JSON lines printed since."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    logs.configure("INFO")
    capsys.readouterr()

    def read() -> tuple[list[dict], str]:
        out = capsys.readouterr().out
        lines = [line for line in out.splitlines() if line.strip()]
        parsed = []
        for line in lines:
            if line.startswith("{"):
                parsed.append(json.loads(line))  # every log line is one JSON object
        return parsed, out

    yield read
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])


def test_request_id_is_taken_or_made_and_echoed(client):
    given = client.get("/healthz", headers={"X-Request-Id": "abc-123_x.y:z"})
    assert given.headers["X-Request-Id"] == "abc-123_x.y:z"
    made = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"])
    for bad in ("has space", "x" * 129, "inject\"quote", "<script>"):
        replaced = client.get("/healthz", headers={"X-Request-Id": bad})
        assert replaced.headers["X-Request-Id"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-Id"])
    # also on errors the handler answers (404, 400 problem documents)
    assert client.get("/nope", headers={"X-Request-Id": "r404"}).headers["X-Request-Id"] == "r404"
    bad_body = client.post("/v1/login", data="{", content_type="application/json", headers={"X-Request-Id": "r400"})
    assert bad_body.status_code == 400 and bad_body.headers["X-Request-Id"] == "r400"


def test_access_log_is_one_json_line_without_the_query_string(client, json_logs):
    client.get("/.well-known/jwks.json?token=very-secret-token&code=123456",
               headers={"X-Request-Id": "req-1", "X-Forwarded-For": "203.0.113.9"})
    client.get("/healthz", headers={"X-Request-Id": "probe-1"})
    client.post("/v1/login", json={"email": "nobody@example.com", "password": "hunter2 is my password"},
                headers={"X-Request-Id": "req-2"})
    entries, out = json_logs()
    access = {e["request_id"]: e for e in entries if e["logger"] == "authsvc.access"}
    first = access["req-1"]
    assert first["route"] == first["path"] == "/.well-known/jwks.json" and first["status"] == 200
    assert "probe-1" not in access  # successful probes are DEBUG
    assert first["method"] == "GET" and isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert first["client"] == "127.0.0.1"  # X-Forwarded-For is not trusted without TRUSTED_PROXIES
    assert first["level"] == "INFO" and first["ts"].endswith("+00:00")
    assert access["req-2"]["route"] == "/v1/login" and access["req-2"]["status"] == 401
    for secret in ("very-secret-token", "123456", "hunter2"):
        assert secret not in out


def test_registration_logs_no_code_and_no_twilio_chatter(client, twilio, smtp, json_logs):
    account = register(client, twilio, smtp)
    entries, out = json_logs()
    codes = [m["body"] for m in twilio.snapshot()] + [m["body"] for m in smtp.messages]
    found = set(re.findall(r"\b\d{6}\b", " ".join(codes)))
    assert found, "the flow sent codes"
    for code in found:
        assert code not in out
    assert account["enrollment_token"] not in out
    assert not [e for e in entries if not e["logger"].startswith("authsvc")], entries
    assert {e["route"] for e in entries if e["logger"] == "authsvc.access"} >= {
        "/v1/registrations", "/v1/registrations/<registration_id>/verify"}


def test_probes_are_logged_at_debug_only(client, json_logs):
    logs.configure("DEBUG")
    client.get("/healthz", headers={"X-Request-Id": "probe-2"})
    client.get("/readyz?x=1", headers={"X-Request-Id": "probe-3"})
    entries, _ = json_logs()
    probes = {e["request_id"]: e for e in entries if e["logger"] == logs.ACCESS_LOGGER}
    assert probes["probe-2"]["level"] == "DEBUG" and probes["probe-2"]["route"] == "/healthz"
    assert probes["probe-3"]["path"] == "/readyz"


def test_third_party_loggers_stay_quiet_even_at_debug():
    try:
        logs.configure("DEBUG")
        assert logging.getLogger("authsvc.services").isEnabledFor(logging.DEBUG)
        for name in ("twilio.http_client", "urllib3.connectionpool", "gunicorn.error", "pgserver", "werkzeug"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        logs.configure("WARNING")
        assert not logging.getLogger("authsvc.services").isEnabledFor(logging.INFO)
        assert logging.getLogger(logs.ACCESS_LOGGER).isEnabledFor(logging.INFO)
    finally:
        logs.configure("INFO")
    with pytest.raises(ValueError):
        logs.configure("LOUD")


@pytest.mark.parametrize("text, hidden", [
    ("postgresql://authsvc:pa55w0rd@db:5432/authsvc", "pa55w0rd"),
    ("smtp+starttls://mailer:hunter22@smtp.example:587", "hunter22"),
    ("GET /report?token=abcDEF123 HTTP/1.1", "abcDEF123"),
    ("refresh_token=rt_123456789 other=1", "rt_123456789"),
    ("password: 'correct horse'", "correct horse"),
    ("Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig", "eyJhbGciOiJFUzI1NiJ9"),
    ('{"phone_code": "039248"}', "039248"),
])
def test_redact_masks_secrets(text, hidden):
    assert hidden not in logs.redact(text)


def test_formatter_redacts_fields_and_exceptions():
    formatter = logs.JsonFormatter()
    try:
        raise RuntimeError("connect failed for postgresql://u:topsecret@h/db")
    except RuntimeError:
        import sys

        record = logging.LogRecord("authsvc.x", logging.ERROR, __file__, 1, "failed %s", ("token=abc123",),
                                   sys.exc_info())
    record.fields = {"url": "postgresql://u:topsecret@h/db", "n": 3}
    line = formatter.format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert "topsecret" not in line and "abc123" not in line
    assert entry["n"] == 3 and entry["exc_type"] == "RuntimeError" and entry["level"] == "ERROR"


@pytest.mark.parametrize("line", ["ſecret=abc", "\u212aey: hunter2", "TOKEN=xyz", "x PASSWD=1"])
def test_redaction_shortcut_does_not_skip_what_the_patterns_catch(line):
    """Lines without a trigger word skip the substitutions; case variants that the patterns'
    IGNORECASE matches (long s, Kelvin sign, upper case) still reach them."""
    from authsvc.logs import redact

    assert redact(line).endswith("***")


def test_timestamps_are_what_datetime_writes():
    """The seconds of ``ts`` are formatted once per second; the line's text is unchanged."""
    import random
    from datetime import UTC, datetime

    rng = random.Random(5)
    for _ in range(20000):
        t = round(1.8e9 + rng.uniform(-1e9, 1e8), rng.choice([3, 4, 6, 7, 9]))
        for created in (t, t + 0.0005, t + 0.9996):  # and the rounding edges next to it
            assert logs._timestamp(created) == datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
