"""The settings table (authsvc/config_table.py) and the parser that reads the environment with it.

The parser replaced a hand-written ``Settings.from_env``; ``tests/support/old_from_env.py`` is a
frozen copy of that one. Over thousands of generated environments (production and --dev, valid
and broken values, migrations' database_only, ``serve --bind``) both must give equal Settings or
the same error, word for word, so no default, minimum or message drifts. The README's
configuration table must be what the table writes.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import pytest

from authsvc import config_table, policy
from authsvc.config import Settings
from authsvc.errors import ConfigError
from tests.support.old_from_env import old_from_env

ROOT = Path(__file__).resolve().parent.parent
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.urlsafe_b64encode(bytes(range(100, 132))).decode().rstrip("=")
STRONG = "Zq8Kd0wP3vXn7TbR2mYc5LhG9sJfA1eU"  # 32 characters, 10+ distinct, no weak word

# For each variable: values that are fine on their own, then values that are wrong.
GOOD: dict[str, list[str]] = {
    "ENCRYPTION_KEY": [KEY_A, f"k1:{KEY_A},k2:{KEY_B}", f"new:{KEY_B}, old:{KEY_A}"],
    "ENCRYPTION_KEY_ID": ["k1", "k2", "new", "old"],
    "SMS_PROVIDER": ["twilio", "console"],
    "TWILIO_ACCOUNT_SID": ["AC0123456789"],
    "TWILIO_FROM": ["+15550001111"],
    "TWILIO_AUTH_TOKEN": [STRONG],
    "TWILIO_API_BASE": ["http://127.0.0.1:9999"],
    "WEBHOOK_URL": ["https://hooks.example.net/authsvc"],
    "WEBHOOK_SECRET": [STRONG[::-1]],
    "SMS_COUNTRIES": ["JP,US", "jp, us ,JP", "GB,GG,JE,IM"],
    "TWILIO_LOOKUP": ["false", "true", "1", "0", " Yes ", "no"],
    "REDIS_URL": ["redis://127.0.0.1:6379/0", "rediss://r.example:6380", "unix:///run/redis.sock",
                  "redis+sentinel://:pw@s1:26379,[::1]:26380,s3/mymaster"],
    "DATABASE_URL": ["postgresql://authsvc@db/authsvc"],
    "DATABASE_POOLER": ["none", "PgBouncer", " pgbouncer "],
    "DATABASE_DIRECT_URL": ["postgresql://authsvc@db-direct/authsvc"],
    "SMTP_URL": ["smtp://127.0.0.1:1025"],
    "BIND": ["127.0.0.1:8000", "0.0.0.0:9000", "[::1]:8080", "example.org:8443", "[2001:db8::1]:80"],
    "PUBLIC_URL": ["https://auth.example.com/", "https://[2001:db8::5]:8443", "http://localhost:8000"],
    "ISSUER": ["https://issuer.example.com", "http://issuer.local"],
    "ORIGINS": ["https://a.example, https://b.example/ ,", " , "],
    "RP_ID": ["example.com"],
    "TRUSTED_PROXIES": ["10.0.0.0/8, 192.168.1.1", "::1/128,", "2001:db8::/48"],
    "METRICS_BIND": ["off", "None", "127.0.0.1:9100", "[::1]:9200", "metrics.internal:9300", "0.0.0.0:8000"],
    "PROXY_HEADER": ["X-Forwarded-For", " Forwarded "],
    "STEP_UP_ACTIONS": ["card.add,withdrawal", "payment.authorize, ,card.add", "a_b.c_d"],
    "WORKER_CLASS": ["sync", "gthread"],
    "LOW_VALUE_EXEMPTION": ["JPY:3000:10000:5,EUR:30:100:5", " USD:10.50:20:1 ,"],
    "TRUSTED_PAYEE_EXEMPTION": ["true", "off", "ON"],
    "RECURRING_EXEMPTION": ["yes", "0"],
    "RATE_LIMITS_PER_PROCESS": ["true", "false"],
    "SPC_INSTRUMENT_ICON": ["https://cdn.example/icon.png", "data:image/png;base64,AAAA"],
    "SPC_INSTRUMENT_NAME": ["Example Card"],
    "DEFAULT_LOCALE": ["en", "ja"],
    "AUDIENCE": ["payments"],
    "FRONTEND_CLIENT_ID": ["web"],
    "RP_NAME": ["Example Pay"],
    "REPORT_URL": ["https://help.example/report?t={token}"],
    "EMAIL_FROM": ["Example <auth@example.com>"],
    "RATE_LIMIT_PREFIX": ["tenant-a"],
    "METRICS_DIR": ["/tmp/authsvc-metrics"],
    "MIGRATIONS_DIR": ["/app/migrations"],
    "OPERATOR": ["alice"],
}
BAD: dict[str, list[str]] = {
    "ENCRYPTION_KEY": ["not base64!", base64.b64encode(bytes(32)).decode(), base64.b64encode(bytes(16)).decode(),
                       f"k1:{KEY_A},k1:{KEY_B}", "bad id!:" + KEY_A, ","],
    "ENCRYPTION_KEY_ID": ["nope"],
    "SMS_PROVIDER": ["TWILIO", "sms"],
    "TWILIO_AUTH_TOKEN": ["changeme-changeme-changeme-changeme", "short", "a" * 40],
    "WEBHOOK_SECRET": ["secret", "x" * 32],
    "SMS_COUNTRIES": ["XX,JP", ",", "  "],
    "TWILIO_LOOKUP": ["on", "maybe"],
    "REDIS_URL": ["http://cache:6379", "redis+sentinel://s1:xx/m", "redis+sentinel://s1/", "REDIS+SENTINEL://s1/a/b"],
    "DATABASE_POOLER": ["pgpool"],
    "BIND": ["nohost", ":80", "h:99999", "h:", "[::1]"],
    "PUBLIC_URL": ["http://auth.example.com", "/"],
    "ISSUER": ["ftp://x"],
    "TRUSTED_PROXIES": ["10.0.0.0/33", "proxy.local"],
    "METRICS_BIND": ["bad", ":9100", "127.0.0.1:8000"],
    "PROXY_HEADER": ["x-real-ip"],
    "STEP_UP_ACTIONS": ["Bad Action", "a" * 70, "card..add"],
    "WORKER_CLASS": [" sync", "gevent"],
    "LOW_VALUE_EXEMPTION": ["JPY:1:2", "EUR:30:10:5", "EUR:x:1:1", "EUR:1:1:1,EUR:1:1:1", "EUR:Infinity:9:1",
                            "eur:1:1:1", "EUR:0:1:1", "EUR:1:1:0"],
    "TRUSTED_PAYEE_EXEMPTION": ["nah"],
    "RECURRING_EXEMPTION": ["2"],
    "RATE_LIMITS_PER_PROCESS": ["sometimes"],
    "SPC_INSTRUMENT_ICON": ["http://cdn.example/icon.png", "javascript:alert(1)"],
    "DEFAULT_LOCALE": ["fr", "EN"],
}
INTS = ["0", "1", "2", "5", "9", "10", "59", "60", "299", "300", "301", "900", "19455", "19456", "86400",
        "2592000", "99999999", " 7 ", "+3", "1_000"]
BAD_INTS = ["-1", "abc", "1.5", "0x10", "1e3"]
for var in config_table.VARS:
    if var.type in ("int", "ms"):
        GOOD[var.name], BAD[var.name] = INTS, BAD_INTS

PRODUCTION = {
    "ENCRYPTION_KEY": KEY_A, "TWILIO_ACCOUNT_SID": "AC0123456789", "TWILIO_FROM": "+15550001111",
    "TWILIO_AUTH_TOKEN": STRONG, "SMS_COUNTRIES": "JP,US", "DATABASE_URL": "postgresql://authsvc@db/authsvc",
    "SMTP_URL": "smtp://127.0.0.1:1025", "PUBLIC_URL": "https://auth.example.com",
}


def _environments(seed: int, count: int, data_dir: Path):
    rng = random.Random(seed)
    for _ in range(count):
        dev = rng.random() < 0.4
        base = {} if dev or rng.random() < 0.2 else dict(PRODUCTION)
        change, wrong = rng.choice([0.1, 0.3, 0.6]), rng.choice([0.0, 0.0, 0.05, 0.3])
        env = {}
        for var in config_table.VARS:
            name = var.name
            if name == "DATA_DIR":
                continue
            value = base.get(name)
            if rng.random() < change:
                pool = BAD.get(name) if BAD.get(name) and rng.random() < wrong else GOOD.get(name, [""])
                value = rng.choice(pool + [""])  # "" is unset
            if value is not None:
                env["AUTHSVC_" + name] = value
        if dev or rng.random() < 0.5:  # --dev keeps its secrets in the data folder: always a temporary one
            env["AUTHSVC_DATA_DIR"] = str(data_dir)
        options = {"dev": dev, "database_only": rng.random() < 0.15,
                   "bind": rng.choice([None, None, None, "127.0.0.1:9001", "[::]:8000", "bad"]),
                   "new_dev_data": rng.random() < 0.8}
        yield env, options


def _outcome(parse, env, options):
    try:
        return parse(env, **options)
    except (ConfigError, ValueError) as exc:
        return (type(exc).__name__, str(exc))
    except KeyError as exc:
        return ("KeyError", str(exc))


@pytest.mark.parametrize("seed", range(6))
def test_the_table_reads_every_environment_as_the_old_parser_did(seed, tmp_path):
    data_dir = tmp_path / "dev-data"
    data_dir.mkdir()
    settled = failed = 0
    messages = set()
    for env, options in _environments(seed, 600, data_dir):
        old, new = _outcome(old_from_env, env, options), _outcome(Settings.from_env, env, options)
        if old != new and old[0] == "KeyError" and options["database_only"]:
            # The old parser crashed (KeyError) when a migration's environment also held an
            # unreadable number; the new one leaves that setting at its default, as migrations
            # do not use it. Every other outcome is identical.
            assert isinstance(new, Settings), (env, options, new)
            continue
        assert old == new, (env, options, old, new)
        if isinstance(new, Settings):
            settled += 1
        else:
            failed += 1
            messages.update(new[1].split("; "))
    assert settled > 60 and failed > 60  # both kinds of outcome are compared, not one
    assert len(messages) > 60  # and many different problems


def test_the_defaults_are_policys():
    s = Settings()
    for var in config_table.VARS:
        if var.type == "int" and var.setting and var.default is not None:
            assert getattr(s, var.setting) == var.default, var.name
        if var.type == "ms":
            assert getattr(s, var.setting) * 1000 == var.default, var.name
    assert s.throttle_rules == policy.THROTTLE and s.sms_caps == policy.SMS and s.hash_gate == policy.HASH_GATE


def test_every_variable_has_a_reader_and_a_doc():
    from authsvc.config_values import _GENERIC, READERS

    names = [var.name for var in config_table.VARS]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Settings)}
    for var in config_table.VARS:
        assert var.name in READERS or var.type in _GENERIC, var.name
        assert var.doc and "|" not in var.doc, var.name
        assert var.setting == "" or var.setting in fields, var.name
        assert var.at_most is None or var.at_most in names


def test_the_readme_table_is_what_the_table_writes():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    start = section.index("| Variable |")
    end = section.find("\n\n", start)
    assert section[start:end + 1 if end >= 0 else None] == config_table.markdown()


def test_python_m_authsvc_config_markdown_prints_it():
    out = subprocess.run([sys.executable, "-m", "authsvc.config", "--markdown"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out == config_table.markdown()
