"""Schemathesis against the live service and ``openapi.yaml``: every phase (the spec's
examples, coverage of its boundaries, random fuzzing, stateful sequences), with real
credentials (a signed-in account, a payment backend's client, fresh step-up tokens for the
guarded operations; see ``st_hooks.py``), bounded in time. It fails on any 5xx, any response
outside the spec (status, content type, headers, body), any schema-invalid input accepted,
and any schema-valid input refused as ``invalid_request`` (the spec looser than the server).
"""

from __future__ import annotations

import base64
import os

import requests
from click.testing import CliRunner

from authsvc.app import build_container
from tests.faults import st_hooks
from tests.faults.service import ROOT, Service, service_env
from tests.support.flows import enroll_webauthn, register
from tests.support.soft_authenticator import SoftAuthenticator

MAX_TIME = int(os.environ.get("AUTHSVC_FUZZ_SECONDS", "120"))  # the whole run's time budget


class Http:
    """The few calls of tests.support.flows, over HTTP against the live service."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def post(self, path: str, json: dict | None = None, headers: dict | None = None):
        r = requests.post(self.base_url + path, json=json, headers=headers or {}, timeout=30)
        r.get_json = r.json  # type: ignore[attr-defined]
        return r


def test_schemathesis_finds_no_server_error_and_no_spec_violation(settings, twilio, smtp, tmp_path, monkeypatch):
    key = "t1:" + base64.b64encode(settings.encryption_keys[0][1]).decode()
    svc = Service(service_env(settings.database_url, twilio, smtp, AUTHSVC_ENCRYPTION_KEY=key)).start()
    try:
        base = f"http://127.0.0.1:{svc.port}"
        http = Http(base)
        account = register(http, twilio, smtp)
        authenticator = SoftAuthenticator(rp_id="auth.test", origin="https://auth.test")
        enroll_webauthn(http, account["enrollment_token"], authenticator)
        container = build_container(settings)
        try:
            client_id, secret = container.clients.create("fuzz", operator="test", reason="contract fuzzing")
        finally:
            container.close()
        st_hooks.ACCOUNT.clear()
        st_hooks.ACCOUNT.update(base_url=base, email=account["email"], password=account["password"],
                                key=authenticator, client_id=client_id, client_secret=secret)
        st_hooks.sign_in(spares=6)

        from schemathesis.cli import schemathesis as st_cli

        monkeypatch.setenv("SCHEMATHESIS_HOOKS", "tests.faults.st_hooks")
        report = tmp_path / "report.ndjson"
        result = CliRunner().invoke(st_cli, [
            "--config-file", str(ROOT / "tests" / "faults" / "schemathesis.toml"),
            "run", str(ROOT / "openapi.yaml"), "--url", base,
            "--max-time", str(MAX_TIME), "--workers", "1", "--seed", "8",  # threads: CPython 3.11 ast.parse races
            "--report", "ndjson", "--report-ndjson-path", str(report),
            "--no-color",
        ], catch_exceptions=False)
        print(result.output[-8000:])
        print(f"step-up tokens minted: {st_hooks.ACCOUNT.get('step_ups', 0)}, "
              f"sign-ins after the fuzzer ended its session: {st_hooks.ACCOUNT.get('sign_ins', 0)}")
        assert result.exit_code == 0, result.output[-8000:] + "\n" + svc.log()[-4000:]
        assert st_hooks.ACCOUNT.get("step_ups", 0) > 0, "step-up-guarded operations were exercised"
    finally:
        svc.close()
