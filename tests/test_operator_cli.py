"""The CLI as an operator meets it: help everywhere, global options anywhere, serve --bind,
the multi-worker guard, keys list, outbox errors, quiet start-up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from authsvc import cli
from authsvc.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, path + (name,))


def test_every_command_and_option_has_help():
    missing = []
    for path, command in _walk(cli.main):
        if not (command.help or "").strip():
            missing.append(" ".join(("authsvc",) + path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{' '.join(('authsvc',) + path)} {param.opts[0]}")
    assert not missing, f"no help text: {missing}"
    # and --help renders for every one of them
    runner = CliRunner()
    for path, _ in _walk(cli.main):
        result = runner.invoke(cli.main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_global_options_are_hoisted_from_anywhere():
    assert cli.hoist_global_options(["clients", "list", "--dev", "--log-level", "debug"]) == [
        "--dev", "--log-level", "debug", "clients", "list"]
    assert cli.hoist_global_options(["--log-level=WARNING", "db", "status"]) == ["--log-level=WARNING", "db", "status"]
    assert cli.hoist_global_options(["audit", "tail", "--log-level=ERROR", "-n", "3"]) == [
        "--log-level=ERROR", "audit", "tail", "-n", "3"]
    # nothing after "--" is an option
    assert cli.hoist_global_options(["x", "--", "--dev"]) == ["x", "--", "--dev"]


@pytest.mark.parametrize("args", [
    ["--dev", "clients", "list"],
    ["clients", "list", "--dev"],
    ["clients", "--dev", "list", "--log-level", "warning"],
    ["--log-level", "DEBUG", "clients", "list", "--dev"],
])
def test_dev_and_log_level_work_before_and_after_the_command(args, db_url, tmp_path):
    # Without production secrets only --dev can start, so success proves --dev was seen.
    env = {"AUTHSVC_DATABASE_URL": db_url, "AUTHSVC_DATA_DIR": str(tmp_path), "AUTHSVC_ENCRYPTION_KEY": "",
           "AUTHSVC_TWILIO_AUTH_TOKEN": "", "AUTHSVC_SMTP_URL": "", "AUTHSVC_PUBLIC_URL": ""}
    result = CliRunner().invoke(cli.main, args, env=env)
    assert result.exit_code == 0, result.output
    without = CliRunner().invoke(cli.main, [a for a in args if a != "--dev"], env=env)
    assert without.exit_code != 0 and "refusing to start" in without.output


def test_unknown_log_level_is_refused():
    result = CliRunner().invoke(cli.main, ["clients", "list", "--log-level", "LOUD"])
    assert result.exit_code == 2 and "LOUD" in result.output


def _busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


def test_serve_fails_clearly_when_the_port_is_busy(cli_env, tmp_path):
    sock, port = _busy_port()
    try:
        dev = CliRunner().invoke(cli.main, ["serve", "--dev", "--bind", f"127.0.0.1:{port}"],
                                 env={**cli_env, "AUTHSVC_DATA_DIR": str(tmp_path)})
        prod = CliRunner().invoke(cli.main, ["serve", "--bind", f"127.0.0.1:{port}"],
                                  env={**cli_env, "AUTHSVC_WORKERS": "1"})
    finally:
        sock.close()
    for result in (dev, prod):
        assert result.exit_code == 1
        assert f"cannot listen on 127.0.0.1:{port}" in result.output
        assert "listening" not in result.output


def test_serve_refuses_several_workers_without_redis(cli_env):
    result = CliRunner().invoke(cli.main, ["serve", "--bind", "127.0.0.1:0"], env={**cli_env, "AUTHSVC_WORKERS": "3"})
    assert result.exit_code == 1
    assert "refusing to start" in result.output and "AUTHSVC_RATE_LIMITS_PER_PROCESS" in result.output


def test_serving_problems_and_the_opt_in():
    several = Settings(workers=2)
    assert several.serving_problems()
    assert not several.replace(redis_url="redis://127.0.0.1:6379/0").serving_problems()
    assert not several.replace(rate_limits_per_process=True).serving_problems()
    assert not Settings(workers=1).serving_problems()
    env = {"AUTHSVC_DATABASE_URL": "postgresql://db.invalid/x", "AUTHSVC_RATE_LIMITS_PER_PROCESS": "true"}
    assert Settings.from_env(env, database_only=True).rate_limits_per_process


def test_bad_flag_and_bind_values_are_refused(tmp_path):
    env = {"AUTHSVC_DATA_DIR": str(tmp_path)}
    with pytest.raises(Exception, match="RATE_LIMITS_PER_PROCESS"):
        Settings.from_env({**env, "AUTHSVC_RATE_LIMITS_PER_PROCESS": "maybe"}, dev=True)
    with pytest.raises(Exception, match="HOST:PORT"):
        Settings.from_env(env, dev=True, bind="localhost")


def test_dev_public_url_follows_the_bind(tmp_path):
    env = {"AUTHSVC_DATA_DIR": str(tmp_path)}
    s = Settings.from_env(env, dev=True, bind="127.0.0.1:8123")
    assert s.bind == "127.0.0.1:8123"
    assert s.public_url == s.issuer == "http://localhost:8123"
    assert s.origins == ("http://localhost:8123",) and s.rp_id == "localhost"
    assert s.report_url.startswith("http://localhost:8123/")
    # an explicit PUBLIC_URL wins; production never derives it from the bind
    assert Settings.from_env({**env, "AUTHSVC_PUBLIC_URL": "http://app.test:9"}, dev=True,
                             bind="127.0.0.1:8123").public_url == "http://app.test:9"
    assert Settings.from_env({**env, "AUTHSVC_BIND": "0.0.0.0:9001"}, dev=True).public_url == "http://localhost:9001"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_dev_listens_on_bind_and_logs_json(db_url, tmp_path):
    port = _free_port()
    env = {**os.environ, "AUTHSVC_DATABASE_URL": db_url, "AUTHSVC_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authsvc.cli", "serve", "--bind", f"127.0.0.1:{port}", "--dev"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/jwks.json?token=s3cr3t-value",
                                             headers={"X-Request-Id": "op-test-1"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Request-Id"] == "op-test-1"
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "dev server did not come up"
                time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"listening on http://127.0.0.1:{port}" in out
    assert f"public URL: http://localhost:{port}" in out
    access = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"authsvc.access"' in line]
    hit = [a for a in access if a.get("request_id") == "op-test-1"]
    assert hit, out
    assert hit[0]["route"] == "/.well-known/jwks.json" and hit[0]["status"] == 200
    assert hit[0]["client"] == "127.0.0.1"
    assert "s3cr3t-value" not in out + err
    assert "XDG_RUNTIME_DIR" not in out + err


def test_keys_list_shows_signing_and_published_keys(cli_env, app):
    runner = CliRunner()
    app.extensions["authsvc"].keys.ensure_signing_key()
    first = runner.invoke(cli.main, ["keys", "list"], env=cli_env)
    assert first.exit_code == 0, first.output
    rows = [line.split("\t") for line in first.output.strip().splitlines()[1:]]
    assert len(rows) == 1 and rows[0][1] == "signing" and rows[0][4] == "-"
    rotated = runner.invoke(cli.main, ["keys", "rotate", "--reason", "quarterly rotation"], env=cli_env)
    new_kid = rotated.output.split("new signing key ")[1].split()[0]
    rows = {line.split("\t")[0]: line.split("\t")
            for line in runner.invoke(cli.main, ["keys", "list"], env=cli_env).output.strip().splitlines()[1:]}
    assert rows[new_kid][1] == "published (next)"
    old = rows[first.output.strip().splitlines()[1].split("\t")[0]]
    assert old[1] == "signing" and old[4] != "-"  # signs until the new key activates, then retires


def test_outbox_status_shows_the_delivery_cause(cli_env, make_app, settings, twilio, caplog):
    app = make_app(settings, start_outbox=False)
    client = app.test_client()
    twilio.fail_next(1, status=400)
    resp = client.post("/v1/registrations", json={"email": "cause@example.com", "phone": "+819012345670",
                                                  "password": "correct horse battery staple 42"})
    assert resp.status_code == 202
    with caplog.at_level("WARNING", logger="authsvc.services.outbox"):
        app.extensions["authsvc"].outbox.deliver_due()
    cause = "Twilio rejected the message (HTTP 400, code 40000): Unable to create record: Simulated failure"
    logged = [r for r in caplog.records if r.name == "authsvc.services.outbox"]
    assert logged and cause in logged[0].getMessage()
    assert logged[0].fields["cause"].endswith(cause)
    status = CliRunner().invoke(cli.main, ["outbox", "status"], env=cli_env)
    assert status.exit_code == 0, status.output
    assert "pending: 1" in status.output and cause in status.output
    assert "+819012345670" not in status.output


def test_cli_calls_with_the_embedded_database_print_no_library_noise():
    import shutil
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="authsvc-cli-dev-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_") and k != "XDG_RUNTIME_DIR"}
    env["AUTHSVC_DATA_DIR"] = str(data)
    try:
        result = subprocess.run([sys.executable, "-m", "authsvc.cli", "db", "upgrade", "--dev"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied 0001_" in result.stdout
    noise = result.stdout + result.stderr
    assert "XDG_RUNTIME_DIR" not in noise and "pgserver" not in noise and "initdb" not in noise
    assert not result.stderr.strip(), result.stderr
