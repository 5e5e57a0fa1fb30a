"""Metrics: never on the public port, summed over every gunicorn worker, and no label that
tells an unknown email from a wrong password."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.flows import STRONG_PASSWORD, enroll_totp, register

ROOT = Path(__file__).resolve().parent.parent


def rendered(app) -> str:
    body, _ = app.extensions["authsvc"].metrics.render()
    return body.decode()


def test_public_app_has_no_metrics(client):
    assert client.get("/metrics").status_code == 404


def test_known_series_are_exposed_at_zero_from_the_start(app):
    """Before any request: every login outcome, throttle decision and rate-limited route is a
    series at 0 (an alert on rate() sees the first event, not only the second)."""
    text = rendered(app)
    for line in ('authsvc_logins_total{outcome="ok",step="password"} 0.0',
                 'authsvc_logins_total{outcome="invalid_credentials",step="password"} 0.0',
                 'authsvc_logins_total{outcome="locked",step="password"} 0.0',
                 'authsvc_logins_total{outcome="ok",step="second_factor"} 0.0',
                 'authsvc_logins_total{outcome="invalid_factor",step="second_factor"} 0.0',
                 'authsvc_throttle_decisions_total{decision="throttled",reason="email",standing="stranger"} 0.0',
                 'authsvc_throttle_decisions_total{decision="shed",reason="busy",standing="failing"} 0.0',
                 'authsvc_password_hash_shed_total{device="unknown"} 0.0',
                 'authsvc_sms_total{decision="cap_total",purpose="registration"} 0.0',
                 'authsvc_rate_limited_total{endpoint="/v1/login"} 0.0',
                 'authsvc_throttle_store_fallback_total 0.0'):
        assert line in text.splitlines(), line


def test_no_label_separates_unknown_email_from_wrong_password(app, client, twilio, smtp):
    acct = register(client, twilio, smtp)
    enroll_totp(client, acct["enrollment_token"])
    before = rendered(app)
    assert client.post("/v1/login", json={"email": acct["email"], "password": "wrong " + STRONG_PASSWORD}).status_code == 401
    after_wrong = rendered(app)
    assert client.post("/v1/login", json={"email": "nobody-" + acct["email"], "password": STRONG_PASSWORD}).status_code == 401
    after_unknown = rendered(app)

    def changed(a: str, b: str) -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in set(b.splitlines()) - set(a.splitlines())
                if line.startswith("authsvc_logins_total")}

    # both failures move exactly the same series
    assert changed(before, after_wrong) == changed(after_wrong, after_unknown) == {
        'authsvc_logins_total{outcome="invalid_credentials",step="password"}'
    }
    assert "unknown_account" not in after_unknown and "wrong_password" not in after_unknown


def test_reset_sms_metrics_never_tell_a_registered_email(app, client, twilio, smtp):
    """A reset for a registered email sends an SMS, one for an unknown email does not: the
    metrics listener must move the same series by the same amount for both."""
    acct = register(client, twilio, smtp)

    def sms_series(text: str) -> dict[str, str]:
        return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines()
                if line.startswith("authsvc_sms_total")}

    before = sms_series(rendered(app))
    assert client.post("/v1/password-resets", json={"email": acct["email"]}).status_code == 202
    twilio.wait_for(lambda m: m["to"] == acct["phone"] and "reset code" in m["body"])
    after_registered = sms_series(rendered(app))
    assert client.post("/v1/password-resets", json={"email": "nobody-" + acct["email"]}).status_code == 202
    after_unknown = sms_series(rendered(app))

    def moved(a: dict, b: dict) -> dict:
        return {k: float(b[k]) - float(a.get(k, "0")) for k in b if b[k] != a.get(k)}

    assert moved(before, after_registered) == moved(after_registered, after_unknown) == {
        'authsvc_sms_total{decision="requested",purpose="reset"}': 1.0}
    assert not any('purpose="reset"' in k and "requested" not in k for k in after_unknown)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def gunicorn(cli_env, tmp_path):
    api_port, metrics_port = _free_port(), _free_port()
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: removed at start
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "PROMETHEUS_"))},
        **cli_env,
        "AUTHSVC_BIND": f"127.0.0.1:{api_port}",
        "AUTHSVC_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "AUTHSVC_METRICS_DIR": str(samples),
        "AUTHSVC_WORKERS": "2",
        "AUTHSVC_RATE_LIMITS_PER_PROCESS": "true",  # no Redis needed for this test
        # sync workers: a half-sent request pins one of them (below), so both surely serve
        "AUTHSVC_WORKER_CLASS": "sync",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "authsvc.cli", "serve"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _get(api + "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("gunicorn did not start: " + proc.stderr.read().decode()[-3000:])
        time.sleep(0.2)
    try:
        yield api, f"http://127.0.0.1:{metrics_port}", api_port, samples
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_gunicorn_serves_metrics_of_all_workers_on_the_metrics_port_only(gunicorn):
    api, metrics, api_port, samples = gunicorn
    assert not (samples / "counter_999999.db").exists()
    assert _get(api + "/metrics")[0] == 404
    # Keep one worker busy with a request that is not finished yet, so the other one serves
    # the next requests; then finish it: both workers have served /healthz.
    held = socket.create_connection(("127.0.0.1", api_port))
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    time.sleep(0.5)
    for _ in range(10):
        assert _get(api + "/healthz")[0] == 200
    held.sendall(b"Connection: close\r\n\r\n")
    assert b" 200 " in held.recv(4096)
    held.close()

    status, text = _get(metrics + "/metrics")
    assert status == 200
    counts = re.findall(
        r'^authsvc_http_requests_total\{endpoint="/healthz",method="GET",status="200"\} ([0-9.]+)$', text, re.M
    )
    # 11 above plus the start-up probes: every one of them, whichever worker served it
    assert counts and float(counts[0]) >= 11
    before = float(counts[0])
    for _ in range(6):
        _get(api + "/healthz")
    again = re.findall(
        r'^authsvc_http_requests_total\{endpoint="/healthz",method="GET",status="200"\} ([0-9.]+)$',
        _get(metrics + "/metrics")[1], re.M,
    )
    assert float(again[0]) == before + 6
    assert "authsvc_outbox_depth" in text
    # known series at 0 from the start, summed over the workers as well
    assert re.search(r'^authsvc_logins_total\{outcome="invalid_credentials",step="password"\} 0\.0$', text, re.M)
    pids = {f.name.split("_")[-1] for f in samples.glob("counter_*.db")}
    assert len(pids) >= 2  # samples from two worker processes, summed above
    assert _get(metrics + "/other")[0] == 404
