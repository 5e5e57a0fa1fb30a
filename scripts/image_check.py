"""Build the container image and run it as an operator would; prints the image size.

    .venv/bin/python scripts/image_check.py [--base IMAGE] [--tag TAG] [--no-build]

(``scripts/image-check.sh`` is the entry point: where no container engine runs, or the test
extras are missing, it fails with exit 2 and says why, unless ``AUTHSVC_IMAGE_CHECK=0`` asks to
skip.) Against the local PostgreSQL (``AUTHSVC_CHECK_DATABASE_URL``, else
``AUTHSVC_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch
database is created and dropped; without one it builds, then fails with exit 2: the image was
not run),
the test fakes of Twilio and SMTP, and Redis when one answers on ``AUTHSVC_CHECK_REDIS_URL``
(default ``redis://127.0.0.1:6379/15``), with the host network, it checks that:

1. ``db upgrade`` runs in the image (read-only root filesystem);
2. ``serve`` with 2 workers and no Redis refuses to start and says why;
3. ``serve`` runs with ``--read-only --tmpfs /tmp --cap-drop ALL`` as uid 10001, becomes ready,
   and a whole registration goes through it: the SMS reaches the Twilio fake through the real
   (trimmed) twilio client, the email reaches the SMTP sink, the codes verify;
4. every log line it printed is JSON, none carries a code or the query string's token, and
   every response echoes ``X-Request-Id``;
5. ``keys list`` and ``outbox status`` work in the image; ``docker stop`` ends it cleanly.

The base image: ``--base``, else the Dockerfile's pinned default when it is present locally,
else one made with ``scripts/debian-base.sh`` (debootstrap; needs root). Behind a
TLS-inspecting proxy, ``PIP_CERT`` (or /etc/pip.conf's ``cert``) is handed to the build as a
secret.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOCAL_BASE = "authsvc-base:bookworm"


def run(*args: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, text=True, capture_output=capture, **kw)


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return run(DOCKER, *args, **kw)


def docker_cli() -> str | None:
    # Prefer a client with the builder built in (Debian's docker.io) over one needing buildx.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            if subprocess.run([candidate, "info"], capture_output=True).returncode == 0:
                return candidate
    return None


DOCKER = docker_cli() or "docker"


def default_base() -> str:
    text = (ROOT / "Dockerfile").read_text()
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)


def pick_base(requested: str | None) -> str:
    if requested:
        return requested
    pinned = default_base()
    if docker("image", "inspect", pinned, check=False).returncode == 0:
        return pinned
    if docker("image", "inspect", LOCAL_BASE, check=False).returncode == 0:
        return LOCAL_BASE
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        print(f"making {LOCAL_BASE} with debootstrap (takes minutes)...", flush=True)
        run("bash", str(ROOT / "scripts/debian-base.sh"), LOCAL_BASE, capture=False)
        return LOCAL_BASE
    print(f"pulling {pinned} ...", flush=True)
    if docker("pull", pinned, check=False, capture=False).returncode == 0:
        return pinned
    raise SystemExit("no base image: pass --base, or run as root with debootstrap installed")


def pip_ca() -> str | None:
    if os.environ.get("PIP_CERT"):
        return os.environ["PIP_CERT"]
    for conf in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.config/pip/pip.conf")):
        parser = configparser.ConfigParser()
        try:
            parser.read(conf)
        except configparser.Error:
            continue
        if parser.has_option("global", "cert"):
            return parser.get("global", "cert")
    return None


def build(tag: str, base: str) -> None:
    args = ["build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag]
    ca = pip_ca()
    if ca and Path(ca).is_file():
        args += ["--secret", f"id=pip-ca,src={ca}"]
    started = time.monotonic()
    result = run(DOCKER, *args, str(ROOT), check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
        raise SystemExit("image build failed")
    print(f"built {tag} from {base} in {time.monotonic() - started:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_url() -> str | None:
    url = os.environ.get("AUTHSVC_CHECK_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:  # noqa: BLE001 - no Redis: the check runs one worker instead
        return None


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="base image for the PYTHON_IMAGE build argument")
    parser.add_argument("--tag", default="authsvc:check")
    parser.add_argument("--no-build", action="store_true", help="check an image built before")
    args = parser.parse_args()

    import psycopg
    from psycopg.conninfo import make_conninfo

    from tests.support.fake_twilio import FakeTwilio
    from tests.support.messages import extract_code
    from tests.support.smtp_sink import SmtpSink

    if not args.no_build:
        build(args.tag, pick_base(args.base))
    size = int(docker("image", "inspect", "--format", "{{.Size}}", args.tag).stdout)
    print(f"image {args.tag}: {size / 1e6:.1f} MB", flush=True)

    admin_url = (os.environ.get("AUTHSVC_CHECK_DATABASE_URL") or os.environ.get("AUTHSVC_DATABASE_URL")
                 or "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error:
        print("image check FAILED: the image was built but not run: no PostgreSQL reachable over TCP "
              "(set AUTHSVC_CHECK_DATABASE_URL)", file=sys.stderr)
        return 2
    dbname = f"authsvc_image_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    container = f"authsvc-check-{uuid.uuid4().hex[:8]}"
    port = free_port()
    from authsvc.config import Settings

    metrics_port = free_port() if hasattr(Settings(), "metrics_bind") else None
    redis = redis_url()
    try:
        with FakeTwilio() as twilio, SmtpSink() as smtp:
            env = {
                "AUTHSVC_DATABASE_URL": make_conninfo(admin_url, dbname=dbname),
                "AUTHSVC_ENCRYPTION_KEY": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "AUTHSVC_TWILIO_ACCOUNT_SID": twilio.account_sid,
                "AUTHSVC_TWILIO_AUTH_TOKEN": twilio.auth_token,
                "AUTHSVC_TWILIO_FROM": "+15005550006",
                "AUTHSVC_TWILIO_API_BASE": twilio.base_url,
                "AUTHSVC_SMTP_URL": smtp.url,
                "AUTHSVC_PUBLIC_URL": "https://auth.example",
                "AUTHSVC_SMS_COUNTRIES": "JP",
                "AUTHSVC_BIND": f"127.0.0.1:{port}",
            }
            if metrics_port:
                env["AUTHSVC_METRICS_BIND"] = f"127.0.0.1:{metrics_port}"
            hardened = ["--network", "host", "--read-only", "--tmpfs", "/tmp:size=16m,mode=1777",
                        "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
            env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]

            up = docker("run", "--rm", *hardened, *env_args, args.tag, "db", "upgrade")
            assert "applied" in up.stdout, up.stdout + up.stderr
            print("ok  db upgrade (read-only root filesystem)", flush=True)

            refused = docker("run", "--rm", *hardened, *env_args, "-e", "AUTHSVC_WORKERS=2", args.tag, "serve",
                             check=False)
            assert refused.returncode == 1 and "AUTHSVC_RATE_LIMITS_PER_PROCESS" in refused.stderr, refused
            print("ok  2 workers without Redis: refused", flush=True)

            workers = ["-e", "AUTHSVC_WORKERS=2", "-e", f"AUTHSVC_REDIS_URL={redis}"] if redis else \
                ["-e", "AUTHSVC_WORKERS=1"]
            docker("run", "-d", "--name", container, *hardened, *env_args, *workers, args.tag)
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    status, _, _ = http("GET", base_url + "/readyz")
                    if status == 200:
                        break
                except OSError:
                    pass
                state = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
                if state != "true" or time.monotonic() > deadline:
                    print(docker("logs", container, check=False).stdout)
                    raise SystemExit("the service did not become ready")
                time.sleep(0.5)
            user = docker("exec", container, "id", "-u").stdout.strip()
            assert user == "10001", user
            print(f"ok  serve ready ({'2 workers + Redis' if redis else '1 worker'}), uid {user}", flush=True)

            email = f"check-{secrets.token_hex(4)}@example.com"
            phone = "+8190" + "".join(str(secrets.randbelow(10)) for _ in range(8))
            status, headers, body = http("POST", base_url + "/v1/registrations",
                                         {"email": email, "phone": phone,
                                          "password": "correct horse battery staple 42"},
                                         {"X-Request-Id": "image-check-1"})
            assert status == 202, body
            assert headers["X-Request-Id"] == "image-check-1"
            sms = twilio.wait_for(lambda m: m["to"] == phone, timeout=20)
            mail = smtp.wait_for(lambda m: m["to"] == email, timeout=20)
            codes = extract_code(sms["body"]), extract_code(mail["body"])
            status, headers, verified = http("POST", f"{base_url}/v1/registrations/{body['registration_id']}/verify",
                                             {"phone_code": codes[0], "email_code": codes[1]})
            assert status == 201, verified
            assert len(headers["X-Request-Id"]) == 32
            print("ok  registration: SMS via twilio -> fake, email via SMTP -> sink, codes verified", flush=True)
            http("GET", base_url + "/healthz?token=query-secret-xyz")

            if metrics_port:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
                    scraped = resp.read().decode()
                assert "authsvc_http_requests" in scraped, scraped[:500]
                print(f"ok  metrics listener on its own port ({metrics_port})", flush=True)

            keys = docker("exec", container, "authsvc", "keys", "list")
            assert "\tsigning\t" in keys.stdout, keys.stdout
            outbox = docker("exec", container, "authsvc", "outbox", "status")
            assert "pending: 0" in outbox.stdout and "failed: 0" in outbox.stdout, outbox.stdout
            print("ok  keys list, outbox status", flush=True)

            stop = docker("stop", "-t", "30", container)
            code = docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
            logs = docker("logs", container)
            lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
            entries = [json.loads(line) for line in lines]  # raises on any line that is not JSON
            assert code == "0", (code, stop)
            assert any(e.get("request_id") == "image-check-1" and e.get("route") == "/v1/registrations"
                       for e in entries), lines
            text = logs.stdout + logs.stderr
            for secret in (*codes, "query-secret-xyz", verified["enrollment_token"], twilio.auth_token):
                assert secret not in text, f"secret in logs: {secret[:4]}..."
            print(f"ok  {len(entries)} log lines, all JSON, no code/token; stopped cleanly (exit {code})", flush=True)
    finally:
        docker("rm", "-f", container, check=False)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(f"image check passed: {args.tag} {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
