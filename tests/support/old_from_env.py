"""A frozen copy of ``Settings.from_env`` as it was before the declarative table (commit
37506fa, authsvc/config.py), with the helpers it called, so tests/test_config_table.py can
compare the new parser with it over many environments. Do not edit: it is the reference."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import overload
from urllib.parse import unquote, urlsplit

from authsvc.config import DEV_DATA_DIR, LowValueCap, Settings, _dev_secrets, find_dev_data_dir
from authsvc.errors import ConfigError

PREFIX = "AUTHSVC_"
BUILTIN_STEP_UP_ACTIONS = (
    "payment.authorize",
    "factor.add",
    "factor.remove",
    "factor.recovery_codes",
    "contact.change",
    "payee.trust",
)
DEV_SMS_COUNTRIES = ("JP", "US")
_WEAK_WORDS = ("changeme", "secret", "password", "example", "default", "test")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def old_from_env(
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

    @overload
    def get(name: str) -> str | None: ...
    @overload
    def get(name: str, default: str) -> str: ...
    @overload
    def get(name: str, default: str | None) -> str | None: ...
    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(PREFIX + name)
        return value if value not in (None, "") else default

    problems: list[str] = []
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
    dev_secrets = _dev_secrets(data_dir) if dev else {}

    raw_key = get("ENCRYPTION_KEY") or dev_secrets.get("encryption_key")
    keys: tuple[tuple[str, bytes], ...] = ()
    if raw_key is None:
        problems.append("AUTHSVC_ENCRYPTION_KEY is missing (32 random bytes, base64)")
    else:
        try:
            keys = parse_encryption_keys(raw_key)
        except ConfigError as exc:
            problems.append(f"AUTHSVC_ENCRYPTION_KEY: {exc.detail}")
    encrypting = get("ENCRYPTION_KEY_ID")
    if encrypting is not None and keys:
        # Which key encrypts (default: the first). A key rolls out decrypt-only first, then a
        # second roll-out makes it the encrypting one: no replica ever meets a ciphertext
        # under a key it lacks (README, "A fleet of replicas").
        if encrypting not in {kid for kid, _ in keys}:
            problems.append(f"AUTHSVC_ENCRYPTION_KEY_ID: {encrypting!r} is not a key id of AUTHSVC_ENCRYPTION_KEY")
        else:
            keys = tuple(sorted(keys, key=lambda item: item[0] != encrypting))  # it first, others in order

    sms_provider = get("SMS_PROVIDER", "console" if dev else "twilio")
    if sms_provider not in ("twilio", "console"):
        problems.append("AUTHSVC_SMS_PROVIDER must be 'twilio' or 'console'")
    if sms_provider == "console" and not dev:
        problems.append("AUTHSVC_SMS_PROVIDER=console is for --dev only")
    if sms_provider == "twilio":
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_FROM"):
            if not get(name):
                problems.append(f"AUTHSVC_{name} is missing")
        token = get("TWILIO_AUTH_TOKEN")
        if not token:
            problems.append("AUTHSVC_TWILIO_AUTH_TOKEN is missing")
        elif _weak_secret(token, min_len=32):
            problems.append("AUTHSVC_TWILIO_AUTH_TOKEN is weak (32+ characters, not a placeholder)")

    webhook_url = get("WEBHOOK_URL")
    webhook_secret = get("WEBHOOK_SECRET") or (dev_secrets.get("webhook_secret") if webhook_url else None)
    if webhook_url:
        if not webhook_secret:
            problems.append("AUTHSVC_WEBHOOK_SECRET is missing (required with AUTHSVC_WEBHOOK_URL)")
        elif _weak_secret(webhook_secret, min_len=32):
            problems.append("AUTHSVC_WEBHOOK_SECRET is weak (32+ characters, not a placeholder)")

    sms_countries: list[str] = []
    raw_countries = get("SMS_COUNTRIES", ",".join(DEV_SMS_COUNTRIES) if dev else None)
    if raw_countries is None:
        problems.append("AUTHSVC_SMS_COUNTRIES is missing (ISO 3166 codes SMS may go to, e.g. JP,US)")
    else:
        import phonenumbers  # only to know which region codes exist

        for item in raw_countries.split(","):
            code = item.strip().upper()
            if not code:
                continue
            if code not in phonenumbers.SUPPORTED_REGIONS:
                problems.append(f"AUTHSVC_SMS_COUNTRIES: {item.strip()!r} is not an ISO 3166 country code")
            elif code not in sms_countries:
                sms_countries.append(code)
        if not raw_countries.replace(",", "").strip():
            problems.append("AUTHSVC_SMS_COUNTRIES lists no country")
    raw_lookup = (get("TWILIO_LOOKUP", "false") or "false").strip().lower()
    if raw_lookup not in ("true", "false", "1", "0", "yes", "no"):
        problems.append("AUTHSVC_TWILIO_LOOKUP must be true or false")
    twilio_lookup = raw_lookup in ("true", "1", "yes")
    if twilio_lookup and sms_provider != "twilio":
        problems.append("AUTHSVC_TWILIO_LOOKUP=true needs AUTHSVC_SMS_PROVIDER=twilio")

    redis_url = get("REDIS_URL")
    if redis_url:
        scheme = redis_url.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
            problems.append("AUTHSVC_REDIS_URL must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        elif scheme == "redis+sentinel":
            try:
                sentinel_parts(redis_url)
            except ValueError as exc:
                problems.append(f"AUTHSVC_REDIS_URL: {exc} (redis+sentinel://host:port[,host:port]/service)")

    database_url = get("DATABASE_URL")
    if not database_url and not dev:
        problems.append("AUTHSVC_DATABASE_URL is missing")
    pooler = (get("DATABASE_POOLER", "none") or "none").strip().lower()
    if pooler not in ("none", "pgbouncer"):
        problems.append("AUTHSVC_DATABASE_POOLER must be 'none' or 'pgbouncer' (transaction pooling)")
    direct_url = get("DATABASE_DIRECT_URL")
    smtp_url = get("SMTP_URL")
    if not smtp_url and not dev:
        problems.append("AUTHSVC_SMTP_URL is missing")

    bind = bind or get("BIND", "127.0.0.1:8000" if dev else "0.0.0.0:8000")
    bind_host, bind_port = _parse_bind(bind, problems)
    default_public = "http://localhost:8000"
    if dev and bind_port:
        host = "localhost" if bind_host in ("", "0.0.0.0", "127.0.0.1", "::", "::1") else bind_host
        default_public = f"http://{'[' + host + ']' if ':' in host else host}:{bind_port}"
    public_url = get("PUBLIC_URL", default_public).rstrip("/")
    issuer = get("ISSUER", public_url)
    origins = tuple(o.strip().rstrip("/") for o in (get("ORIGINS", public_url) or "").split(",") if o.strip())
    rp_id = get("RP_ID", urlsplit(public_url).hostname or "localhost")
    if not dev:
        for name, value in (("ISSUER", issuer), ("PUBLIC_URL", public_url)):
            if not value.startswith("https://"):
                problems.append(f"AUTHSVC_{name} must be an https:// URL outside --dev")

    proxies: list = []
    for item in (get("TRUSTED_PROXIES", "") or "").split(","):
        if item.strip():
            try:
                proxies.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                problems.append(f"AUTHSVC_TRUSTED_PROXIES: {item.strip()!r} is not a CIDR")

    metrics_listen = (get("METRICS_BIND", "127.0.0.1:9100") or "").strip()
    metrics_bind: str | None = metrics_listen
    if metrics_listen.lower() in ("off", "none"):
        metrics_bind = None
    elif not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", metrics_listen):
        problems.append("AUTHSVC_METRICS_BIND must be host:port (or 'off')")
    elif bind_port and int(metrics_listen.rpartition(":")[2]) == bind_port:
        problems.append("AUTHSVC_METRICS_BIND must use another port than the API (metrics are never public)")

    proxy_header = (get("PROXY_HEADER", "x-forwarded-for") or "").strip().lower()
    if proxy_header not in ("x-forwarded-for", "forwarded"):
        problems.append("AUTHSVC_PROXY_HEADER must be 'X-Forwarded-For' or 'Forwarded'")

    extra_actions = []
    for item in (get("STEP_UP_ACTIONS", "") or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not _ACTION_RE.fullmatch(item) or len(item) > 64:
            problems.append(f"AUTHSVC_STEP_UP_ACTIONS: {item!r} is not a valid action name")
        elif item not in BUILTIN_STEP_UP_ACTIONS:
            extra_actions.append(item)

    worker_class = get("WORKER_CLASS", "gthread")
    if worker_class not in ("gthread", "sync"):
        problems.append("AUTHSVC_WORKER_CLASS must be 'gthread' or 'sync'")

    ints: dict[str, int] = {}
    for name, default, low in (
        ("ARGON2_TIME_COST", 2, 2),
        ("ARGON2_MEMORY_COST", 19456, 19456),
        ("ARGON2_PARALLELISM", 1, 1),
        ("ACCESS_TOKEN_TTL", 600, 60),
        ("SESSION_MAX_AGE", 30 * 24 * 3600, 300),
        ("SESSION_IDLE_TIMEOUT", 7 * 24 * 3600, 300),
        ("PAYMENT_MAX_SESSION_AGE", 24 * 3600, 60),
        ("WORKERS", 2, 1),
        ("GRACEFUL_TIMEOUT", 30, 1),
        ("DRAIN_SECONDS", 5, 0),
        ("THREADS", 8, 1),
        ("GATE_THREADS", 16, 1),  # 256 until the list-attack runs of 2026-12-08 (README, Benchmarks)
        ("REQUEST_READ_TIMEOUT", 10, 1),
        ("HASH_CONCURRENCY", 0, 0),
        ("HASH_QUEUE_BUDGET_MS", 3000, 1),
        ("HASH_KNOWN_BUDGET_MS", 5000, 1),
        ("HASH_FAILING_BUDGET_MS", 250, 1),
        ("SMS_HOURLY_CAP", 1000, 1),
        ("SMS_COUNTRY_HOURLY_CAP", None, 1),  # default: the global cap
        ("SMS_NUMBER_HOURLY_CAP", 5, 1),
        ("SMS_ACCOUNT_HOURLY_CAP", 10, 1),
        ("SMS_CLIENT_HOURLY_CAP", 20, 1),
        ("SMS_NETWORK_HOURLY_CAP", 100, 1),
        ("AUDIT_CHECKPOINT_SECONDS", 300, 10),
        ("THROTTLE_WINDOW", 900, 60),
        ("THROTTLE_CLIENT_FAILURES", 20, 1),
        ("THROTTLE_NETWORK_FAILURES", 100, 1),
        ("THROTTLE_EMAIL_FAILURES", 10, 1),
        ("THROTTLE_DEVICE_FAILURES", 10, 1),
        ("ATTACK_FAILURES_PER_MINUTE", 300, 2),
        ("EXEMPTION_COOLDOWN", 7 * 24 * 3600, 0),
    ):
        raw = get(name, str(default) if default is not None else get("SMS_HOURLY_CAP", "1000"))
        try:
            ints[name] = int(raw)
        except ValueError:
            problems.append(f"AUTHSVC_{name} must be an integer")
            continue
        if ints[name] < low:
            problems.append(f"AUTHSVC_{name} must be at least {low}")

    per_process = _flag(get("RATE_LIMITS_PER_PROCESS", "false") or "false")
    if per_process is None:
        problems.append("AUTHSVC_RATE_LIMITS_PER_PROCESS must be true or false")
    default_locale = get("DEFAULT_LOCALE", "en") or "en"
    low_value: tuple[LowValueCap, ...] = ()
    try:
        low_value = parse_low_value_caps(get("LOW_VALUE_EXEMPTION", "") or "")
    except ConfigError as exc:
        problems.append(f"AUTHSVC_LOW_VALUE_EXEMPTION: {exc.detail}")
    exemption_flags = {}
    for name in ("TRUSTED_PAYEE_EXEMPTION", "RECURRING_EXEMPTION"):
        exemption_flags[name] = _flag(get(name, "false") or "false")
        if exemption_flags[name] is None:
            problems.append(f"AUTHSVC_{name} must be true or false")
    spc_icon = get("SPC_INSTRUMENT_ICON", "") or ""
    if spc_icon and not re.match(r"^(https://|data:image/)", spc_icon):
        problems.append("AUTHSVC_SPC_INSTRUMENT_ICON must be an https: or data:image/ URL")
    if default_locale not in ("en", "ja"):
        problems.append("AUTHSVC_DEFAULT_LOCALE must be 'en' or 'ja'")

    for shorter, longer in (("SESSION_IDLE_TIMEOUT", "SESSION_MAX_AGE"),
                            ("PAYMENT_MAX_SESSION_AGE", "SESSION_MAX_AGE")):
        if shorter in ints and longer in ints and ints[shorter] > ints[longer]:
            problems.append(f"AUTHSVC_{shorter} must not exceed AUTHSVC_{longer}")

    if database_only:
        problems = [p for p in problems if p.startswith("AUTHSVC_DATABASE_")]
    if problems:
        raise ConfigError("; ".join(problems))

    return Settings(
        dev=dev,
        database_url=database_url,
        database_pooler=None if pooler == "none" else pooler,
        database_direct_url=direct_url,
        data_dir=data_dir,
        migrations_dir=Path(get("MIGRATIONS_DIR", str(_project_root() / "migrations"))),
        redis_url=redis_url,
        rate_limit_prefix=get("RATE_LIMIT_PREFIX", "authsvc"),
        bind=bind,
        workers=ints["WORKERS"],
        graceful_timeout=ints["GRACEFUL_TIMEOUT"],
        drain_seconds=ints["DRAIN_SECONDS"],
        threads=ints["THREADS"],
        gate_threads=ints["GATE_THREADS"],
        request_read_timeout=ints["REQUEST_READ_TIMEOUT"],
        worker_class=worker_class,
        hash_concurrency=ints["HASH_CONCURRENCY"],
        hash_queue_budget=ints["HASH_QUEUE_BUDGET_MS"] / 1000,
        hash_known_budget=ints["HASH_KNOWN_BUDGET_MS"] / 1000,
        hash_failing_budget=ints["HASH_FAILING_BUDGET_MS"] / 1000,
        rate_limits_per_process=bool(per_process),
        metrics_bind=metrics_bind,
        metrics_dir=Path(get("METRICS_DIR", "")) if get("METRICS_DIR") else None,
        issuer=issuer,
        audience=get("AUDIENCE", "authsvc"),
        frontend_client_id=get("FRONTEND_CLIENT_ID", "frontend"),
        rp_id=rp_id,
        rp_name=get("RP_NAME", "authsvc"),
        origins=origins,
        public_url=public_url,
        report_url=get("REPORT_URL", public_url + "/report?token={token}"),
        default_locale=default_locale,
        encryption_keys=keys,
        sms_provider=sms_provider,
        twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
        twilio_from=get("TWILIO_FROM"),
        twilio_api_base=get("TWILIO_API_BASE"),
        smtp_url=smtp_url,
        email_from=get("EMAIL_FROM", "authsvc <no-reply@localhost>"),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        sms_countries=tuple(sms_countries),
        twilio_lookup=twilio_lookup,
        sms_hourly_cap=ints["SMS_HOURLY_CAP"],
        sms_country_hourly_cap=ints["SMS_COUNTRY_HOURLY_CAP"],
        sms_number_hourly_cap=ints["SMS_NUMBER_HOURLY_CAP"],
        sms_account_hourly_cap=ints["SMS_ACCOUNT_HOURLY_CAP"],
        sms_client_hourly_cap=ints["SMS_CLIENT_HOURLY_CAP"],
        sms_network_hourly_cap=ints["SMS_NETWORK_HOURLY_CAP"],
        trusted_proxies=tuple(proxies),
        proxy_header=proxy_header,
        step_up_actions=BUILTIN_STEP_UP_ACTIONS + tuple(extra_actions),
        argon2_time_cost=ints["ARGON2_TIME_COST"],
        argon2_memory_cost=ints["ARGON2_MEMORY_COST"],
        argon2_parallelism=ints["ARGON2_PARALLELISM"],
        access_token_ttl=ints["ACCESS_TOKEN_TTL"],
        session_max_age=ints["SESSION_MAX_AGE"],
        session_idle_timeout=ints["SESSION_IDLE_TIMEOUT"],
        payment_max_session_age=ints["PAYMENT_MAX_SESSION_AGE"],
        audit_checkpoint_interval=ints["AUDIT_CHECKPOINT_SECONDS"],
        throttle_window=ints["THROTTLE_WINDOW"],
        throttle_client_failures=ints["THROTTLE_CLIENT_FAILURES"],
        throttle_network_failures=ints["THROTTLE_NETWORK_FAILURES"],
        throttle_email_failures=ints["THROTTLE_EMAIL_FAILURES"],
        throttle_device_failures=ints["THROTTLE_DEVICE_FAILURES"],
        attack_failures_per_minute=ints["ATTACK_FAILURES_PER_MINUTE"],
        low_value_exemptions=low_value,
        trusted_payee_exemption=bool(exemption_flags["TRUSTED_PAYEE_EXEMPTION"]),
        recurring_exemption=bool(exemption_flags["RECURRING_EXEMPTION"]),
        exemption_cooldown=ints["EXEMPTION_COOLDOWN"],
        spc_instrument_name=get("SPC_INSTRUMENT_NAME") or get("RP_NAME", "authsvc"),
        spc_instrument_icon=spc_icon,
    )


def parse_low_value_caps(raw: str) -> tuple[LowValueCap, ...]:
    """``CUR:max_amount:max_cumulative:max_count,...`` (e.g. ``JPY:3000:10000:5,EUR:30:100:5``)."""
    caps: list[LowValueCap] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 4 or not re.fullmatch(r"[A-Z]{3}", parts[0]):
            raise ConfigError(f"{item!r} is not CUR:max_amount:max_cumulative:max_count")
        try:
            amount, cumulative = Decimal(parts[1]), Decimal(parts[2])
            count = int(parts[3])
        except (InvalidOperation, ValueError):
            raise ConfigError(f"{item!r}: amounts must be decimals and the count an integer") from None
        if not (amount.is_finite() and cumulative.is_finite()) or amount <= 0 or count < 1:
            raise ConfigError(f"{item!r}: amounts must be positive and the count at least 1")
        if cumulative < amount:
            raise ConfigError(f"{item!r}: the cumulative cap must be at least the per-payment cap")
        if any(c.currency == parts[0] for c in caps):
            raise ConfigError(f"{parts[0]} appears twice")
        caps.append(LowValueCap(parts[0], amount, cumulative, count))
    return tuple(caps)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, str | None, str | None]:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service`` ->
    (sentinels, service name, username, password); ``ValueError`` when malformed. The same
    form flask-limiter (``limits``) reads for the rate limits (database 0)."""
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ValueError("not a redis+sentinel:// URL")
    auth, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if auth:
        user, _, pw = auth.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) or None)
    sentinels = []
    for item in hosts.split(","):
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port = item.partition(":")
        port = port or "26379"
        if not host or not port.isdigit():
            raise ValueError(f"bad sentinel address {item!r}")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if len(path) != 1:
        raise ValueError("the URL must end with /<service name>")
    return sentinels, path[0], username, password


def parse_encryption_keys(raw: str) -> tuple[tuple[str, bytes], ...]:
    """``base64`` or ``kid:base64[,kid:base64...]``; the first key encrypts."""
    keys: list[tuple[str, bytes]] = []
    for i, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        kid, _, b64 = part.rpartition(":")
        kid = kid or ("k1" if i == 0 else f"k{i + 1}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", kid):
            raise ConfigError(f"key id {kid!r} must be 1-32 letters, digits, '-' or '_'")
        try:
            key = base64.b64decode(b64 + "=" * (-len(b64) % 4),
                                   altchars=b"-_" if ("-" in b64 or "_" in b64) else None, validate=True)
        except (ValueError, TypeError):
            raise ConfigError(f"key {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise ConfigError(f"key {kid!r} must decode to 32 bytes, got {len(key)}")
        if len(set(key)) < 16:
            raise ConfigError(f"key {kid!r} is weak (not random)")
        if any(k == kid for k, _ in keys):
            raise ConfigError(f"key id {kid!r} appears twice")
        keys.append((kid, key))
    if not keys:
        raise ConfigError("no key given")
    return tuple(keys)


def _flag(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _parse_bind(bind: str, problems: list[str]) -> tuple[str, int | None]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); a problem is noted when malformed."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]") if host.startswith("[") else host
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        problems.append(f"bind address {bind!r} must be HOST:PORT (e.g. 127.0.0.1:8000)")
        return host, None
    return host, int(port)


def _weak_secret(value: str, *, min_len: int) -> bool:
    lowered = value.lower()
    return (
        len(value) < min_len
        or len(set(value)) < 10
        or any(word in lowered for word in _WEAK_WORDS)
    )
