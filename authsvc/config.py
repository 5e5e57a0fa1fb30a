"""Settings: the only module that reads the environment.

``Settings.from_env()`` reads the ``AUTHSVC_*`` variables of ``config_table.VARS`` (name, type,
default, minimum, doc: one row each) through ``config_values.read_all``. A production start
(``dev=False``) with a missing or weak secret raises :class:`ConfigError` naming every problem;
``dev=True`` fills safe local defaults (random secrets kept in the dev data folder, console SMS
and email, an embedded PostgreSQL when no database URL is given).

The numbers of the rules are ``authsvc/policy.py``'s; ``Settings`` builds each service's slice
of them (``one_time``, ``throttle_rules``, ``sms_caps``, ``hash_gate``, ``lifetimes``).

``python -m authsvc.config --markdown`` prints the README's configuration table.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import policy
from .config_parsers import LowValueCap, parse_encryption_keys, parse_low_value_caps, sentinel_parts, usable_cpus
from .config_table import BUILTIN_STEP_UP_ACTIONS, DEV_DATA_DIR, DEV_SMS_COUNTRIES, PREFIX, markdown
from .config_values import Reading, read_all
from .errors import ConfigError
from .policy import EXEMPTIONS, HASH_GATE, LIFETIMES, ONE_TIME, SMS, THROTTLE

__all__ = [
    "BUILTIN_STEP_UP_ACTIONS", "DEV_DATA_DIR", "DEV_SMS_COUNTRIES", "PREFIX", "ConfigError", "LowValueCap",
    "Settings", "find_dev_data_dir", "operator_name", "os_user", "parse_encryption_keys",
    "parse_low_value_caps", "sentinel_parts", "usable_cpus",
]


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    dev: bool = False
    database_url: str | None = None
    # "pgbouncer": database_url leads to a transaction pooler (no server-side prepared
    # statements; LISTEN and migrations on database_direct_url, which bypasses it).
    database_pooler: str | None = None
    database_direct_url: str | None = None
    data_dir: Path = Path(".authsvc-dev")
    migrations_dir: Path = field(default_factory=lambda: _project_root() / "migrations")
    redis_url: str | None = None
    bind: str = "127.0.0.1:8000"
    metrics_bind: str | None = "127.0.0.1:9100"  # None: no metrics listener
    metrics_dir: Path | None = None  # where workers' samples go; None: a private temporary directory
    workers: int = 2
    graceful_timeout: int = 30  # seconds gunicorn gives workers to finish after SIGTERM
    drain_seconds: int = 5  # after SIGTERM, readiness 503 while still serving, before that
    worker_class: str = "gthread"  # gunicorn: gthread (keep-alive, threads) or sync
    threads: int = 8  # gunicorn gthread threads per worker (keep-alive connections)
    gate_threads: int = 16  # per worker, for sign-ins and registrations waiting at the hash gate
    # seconds a client has to send a whole request (head and body) from its connection's
    # accept (kept-alive: from the request's first byte); then 408 and close (authsvc/workers.py)
    request_read_timeout: int = 10
    # Bounded password hashing (services/platform/hashing.py): argon2 computations at once per worker
    # (0: the CPUs this process may use), and how long a stranger's /
    # a known device's / failing traffic's (during an attack) request may wait for one before a
    # 503 busy.
    hash_concurrency: int = HASH_GATE.concurrency
    hash_queue_budget: float = HASH_GATE.queue_budget
    hash_known_budget: float = HASH_GATE.known_budget
    hash_failing_budget: float = HASH_GATE.failing_budget
    # Several workers (or replicas) without Redis each count rate limits on their own: a start
    # like that is refused unless the operator opts in (AUTHSVC_RATE_LIMITS_PER_PROCESS=true).
    rate_limits_per_process: bool = False

    issuer: str = "http://localhost:8000"
    audience: str = "authsvc"
    # RFC 9068 ``client_id`` of every access token: the payment frontend (app or web page) that
    # signs users in through this service, a public client registered by this setting.
    frontend_client_id: str = "frontend"
    rp_id: str = "localhost"
    rp_name: str = "authsvc"
    origins: tuple[str, ...] = ("http://localhost:8000",)
    public_url: str = "http://localhost:8000"
    report_url: str = "http://localhost:8000/report?token={token}"
    default_locale: str = "en"  # for registrations without locale or a matching Accept-Language

    # kid -> 32-byte AES key; the first one encrypts (AUTHSVC_ENCRYPTION_KEY_ID, else the first
    # listed), all of them decrypt.
    encryption_keys: tuple[tuple[str, bytes], ...] = ()

    sms_provider: str = "console"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str | None = None
    smtp_url: str | None = None
    email_from: str = "authsvc <no-reply@localhost>"
    webhook_url: str | None = None
    webhook_secret: str | None = None

    # SMS policy (services/core/sms_policy.py): destination countries (ISO 3166 region codes as
    # phonenumbers knows them), Twilio Lookup of line types, and hourly caps.
    sms_countries: tuple[str, ...] = DEV_SMS_COUNTRIES
    twilio_lookup: bool = False
    sms_hourly_cap: int = SMS.total
    sms_country_hourly_cap: int = SMS.country
    sms_number_hourly_cap: int = SMS.number
    sms_account_hourly_cap: int = SMS.account
    sms_client_hourly_cap: int = SMS.client
    sms_network_hourly_cap: int = SMS.network

    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    proxy_header: str = "x-forwarded-for"  # or "forwarded" (RFC 7239): what the trusted proxies write
    step_up_actions: tuple[str, ...] = BUILTIN_STEP_UP_ACTIONS

    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19456
    argon2_parallelism: int = 1

    access_token_ttl: int = LIFETIMES.access_token_ttl
    # A session ends session_max_age after its sign-in (auth_time) or session_idle_timeout
    # after its last use, however often it is refreshed; its refresh tokens never outlive it.
    session_max_age: int = LIFETIMES.session_max_age
    session_idle_timeout: int = LIFETIMES.session_idle_timeout
    # Step-up for payment.authorize refuses sessions signed in longer ago than this.
    payment_max_session_age: int = LIFETIMES.payment_max_session_age
    mfa_token_ttl: int = ONE_TIME.mfa_token_ttl
    enrollment_token_ttl: int = ONE_TIME.enrollment_token_ttl
    code_ttl: int = ONE_TIME.code_ttl
    registration_ttl: int = ONE_TIME.registration_ttl
    step_up_ttl: int = ONE_TIME.step_up_ttl
    # Payment exemptions (services/flows/exemptions.py), all off by default: low value per currency,
    # the user's trusted payees, recurring series. They wait exemption_cooldown seconds after a
    # device becomes known, a password reset or an unfreeze.
    low_value_exemptions: tuple[LowValueCap, ...] = ()
    trusted_payee_exemption: bool = False
    recurring_exemption: bool = False
    exemption_cooldown: int = EXEMPTIONS.cooldown
    # Secure Payment Confirmation: the instrument the browser shows beside payee and total.
    spc_instrument_name: str = "authsvc"
    spc_instrument_icon: str = ""  # "" -> a built-in data: URL (services/factors/spc.py)
    device_token_ttl: int = LIFETIMES.device_token_ttl

    # Failure budgets against the list attack (services.core.throttle): failures per window before
    # a wait. Only failures count, so a carrier NAT with many honest users keeps working.
    throttle_window: int = THROTTLE.window
    throttle_client_failures: int = THROTTLE.client_failures
    throttle_network_failures: int = THROTTLE.network_failures
    throttle_email_failures: int = THROTTLE.email_failures
    throttle_device_failures: int = THROTTLE.device_failures
    attack_failures_per_minute: int = THROTTLE.attack_failures_per_minute

    audit_checkpoint_interval: int = 300  # seconds between signed audit chain heads

    rate_limits_enabled: bool = True
    rate_limit_prefix: str = "authsvc"  # namespace of the counters in a shared Redis
    deliver_inline: bool = True  # kick the outbox dispatcher after each commit

    # ------------------------------------------------------------ each service's slice
    @property
    def one_time(self) -> policy.OneTime:
        return dataclasses.replace(ONE_TIME, code_ttl=self.code_ttl, registration_ttl=self.registration_ttl,
                                   mfa_token_ttl=self.mfa_token_ttl, enrollment_token_ttl=self.enrollment_token_ttl,
                                   step_up_ttl=self.step_up_ttl)

    @property
    def throttle_rules(self) -> policy.ThrottleRules:
        return dataclasses.replace(
            THROTTLE, window=self.throttle_window, client_failures=self.throttle_client_failures,
            network_failures=self.throttle_network_failures, email_failures=self.throttle_email_failures,
            device_failures=self.throttle_device_failures, attack_failures_per_minute=self.attack_failures_per_minute)

    @property
    def sms_caps(self) -> policy.SmsCaps:
        return dataclasses.replace(
            SMS, total=self.sms_hourly_cap, country=self.sms_country_hourly_cap, number=self.sms_number_hourly_cap,
            account=self.sms_account_hourly_cap, client=self.sms_client_hourly_cap,
            network=self.sms_network_hourly_cap)

    @property
    def hash_gate(self) -> policy.HashGate:
        return policy.HashGate(concurrency=self.hash_concurrency, queue_budget=self.hash_queue_budget,
                               known_budget=self.hash_known_budget, failing_budget=self.hash_failing_budget)

    @property
    def lifetimes(self) -> policy.Lifetimes:
        return policy.Lifetimes(
            access_token_ttl=self.access_token_ttl, session_max_age=self.session_max_age,
            session_idle_timeout=self.session_idle_timeout, payment_max_session_age=self.payment_max_session_age,
            device_token_ttl=self.device_token_ttl)

    @property
    def hash_slots(self) -> int:
        """argon2 computations at once in one worker process: by default the CPUs the process
        may use, not a share of them per worker. Requests do not spread evenly over workers (a
        wave of 30 measured 20 on one, 10 on the other), and a worker hashing on one core
        while its sibling idled kept half the cores idle through the wave; when both are busy
        each hash takes longer, which the gate's measured cost per hash already counts."""
        if self.hash_concurrency:
            return self.hash_concurrency
        return max(1, int(usable_cpus()))

    @property
    def migration_url(self) -> str | None:
        """Where migrations run: they hold a session-level advisory lock, so never through a
        transaction pooler (the direct URL when there is one)."""
        return self.database_direct_url or self.database_url

    def store_options(self) -> dict[str, Any]:
        """How the store reaches the database (``Store(url, **options)``)."""
        return {"pooled": self.database_pooler is not None, "direct_url": self.database_direct_url}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def serving_problems(self) -> list[str]:
        """Why ``authsvc serve`` must not start with these settings (empty: it may)."""
        if self.workers > 1 and not self.redis_url and not self.rate_limits_per_process:
            return [
                f"AUTHSVC_WORKERS={self.workers} without AUTHSVC_REDIS_URL would count rate limits in each "
                "worker separately (an attacker gets workers x the limit); set AUTHSVC_REDIS_URL, or "
                "AUTHSVC_WORKERS=1, or accept per-process limits with AUTHSVC_RATE_LIMITS_PER_PROCESS=true"
            ]
        return []

    @property
    def encryption_key_id(self) -> str:
        return self.encryption_keys[0][0]

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        dev: bool = False,
        database_only: bool = False,
        bind: str | None = None,
        new_dev_data: bool = True,
        cwd: Path | None = None,
    ) -> Settings:
        """``database_only`` (migrations): only the database settings are required.

        With ``dev`` and no ``AUTHSVC_DATA_DIR`` the dev data folder is the project's (see
        :func:`find_dev_data_dir`); ``new_dev_data=False`` (every command but ``serve --dev``)
        refuses, saying what to do, rather than make a new empty one.

        ``bind`` (``serve --bind``) overrides ``AUTHSVC_BIND``; with ``dev`` the public URL (and
        so the issuer, origins and report link) follows the bound port unless set explicitly.
        """
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None, /) -> str | None:
            value = env.get(PREFIX + name)
            return value if value not in (None, "") else default

        if get("DATA_DIR"):
            data_dir = Path(get("DATA_DIR") or "")
        elif dev:
            data_dir = find_dev_data_dir(cwd or Path.cwd())
        else:
            data_dir = Path(DEV_DATA_DIR)
        if dev and not new_dev_data and not data_dir.is_dir():
            raise ConfigError(
                f"no dev data folder ({DEV_DATA_DIR}/) in {cwd or Path.cwd()} or its parents, nor in the "
                f"project checkout: run `authsvc serve --dev` in the project folder first, or set AUTHSVC_DATA_DIR"
            )
        reading = Reading(get=get, dev=dev, bind=bind, data_dir=data_dir,
                          dev_secrets=_dev_secrets(data_dir) if dev else {})
        fields = read_all(reading)
        problems = reading.problems
        if database_only:
            problems = [p for p in problems if p.startswith("AUTHSVC_DATABASE_")]
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(dev=dev, **fields)


def os_user() -> str:
    """The OS account running this process, from the effective uid (not from $USER or
    $LOGNAME, which anyone can set); ``uid:<n>`` when the uid has no passwd entry."""
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def operator_name() -> str:
    """The operator's name for the audit log's actor: ``AUTHSVC_OPERATOR`` (a person's name when
    several share one admin account), else the OS user. The audit entry records the OS user
    (:func:`os_user`) next to it in any case, so the declared name alone proves nothing."""
    declared = " ".join((os.environ.get(PREFIX + "OPERATOR") or "").split())[:64]
    return declared or os_user()


_CHECKOUT = Path(__file__).resolve().parent.parent  # the source checkout, for an editable install


def find_dev_data_dir(cwd: Path) -> Path:
    """The project's dev data folder (``.authsvc-dev/``: embedded PostgreSQL, dev secrets), so
    ``--dev`` finds the same database from any folder: the nearest one in ``cwd`` or its
    parents; else the one of the source checkout this package runs from (an editable
    install); else where a new one goes: in that checkout, or in ``cwd`` for an installed
    package. Callers decide whether a new one may be made there."""
    for folder in (cwd, *cwd.parents):
        if (folder / DEV_DATA_DIR).is_dir():
            return folder / DEV_DATA_DIR
    checkout = _CHECKOUT
    if (checkout / "pyproject.toml").is_file() and (checkout / "authsvc").is_dir():
        return checkout / DEV_DATA_DIR
    return cwd / DEV_DATA_DIR


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    """Random secrets for --dev, made once and kept in the data folder (mode 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "encryption_key": "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "webhook_secret": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


if __name__ == "__main__":  # python -m authsvc.config --markdown
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m authsvc.config --markdown  (prints the README's configuration table)")
    sys.stdout.write(markdown())
