"""How each ``AUTHSVC_*`` value is read: the parsers and checks behind ``config_table.VARS``.

Nothing here reads the environment: ``config.Settings.from_env`` hands a :class:`Reading` (its
getter over the environment) to :func:`read_all`, which reads every variable of the table in
order and collects every problem, so a bad start names all of them at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .config_parsers import (
    LowValueCap,
    flag,
    parse_bind,
    parse_encryption_keys,
    parse_low_value_caps,
    sentinel_parts,
    weak_secret,
)
from .config_table import BUILTIN_STEP_UP_ACTIONS, DEV_SMS_COUNTRIES, VARS, Var
from .errors import ConfigError

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class Getter(Protocol):
    def __call__(self, name: str, default: str | None = None, /) -> str | None: ...


@dataclass
class Reading:
    """One pass over the table: the getter (unset and empty are the same), the start's mode, and
    what has been read so far (``values``, by variable name) and found wrong (``problems``)."""

    get: Getter
    dev: bool
    bind: str | None  # serve --bind
    data_dir: Path
    dev_secrets: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    bind_host: str = ""
    bind_port: int | None = None


def read_all(r: Reading) -> dict[str, Any]:
    """Every Settings field the table names, read in table order (problems in ``r.problems``);
    a value that could not be read is left out (its field keeps the dataclass default)."""
    fields: dict[str, Any] = {}
    for var in VARS:
        value = (READERS.get(var.name) or _GENERIC[var.type])(r, var)
        if value is _UNREADABLE:
            continue
        r.values[var.name] = value
        if var.setting:
            fields[var.setting] = value
    for var in VARS:
        if var.at_most and var.name in r.values and var.at_most in r.values:
            if r.values[var.name] > r.values[var.at_most]:
                r.problems.append(f"AUTHSVC_{var.name} must not exceed AUTHSVC_{var.at_most}")
    return fields


_UNREADABLE = object()


# ---------------------------------------------------------------- the generic types


def _int(r: Reading, var: Var) -> Any:
    if var.default_from:
        fallback = r.get(var.default_from, str(_var(var.default_from).default))
    else:
        fallback = str(var.default)
    raw = r.get(var.name, fallback)
    try:
        value = int(raw or "")
    except ValueError:
        r.problems.append(f"AUTHSVC_{var.name} must be an integer")
        return _UNREADABLE
    if var.minimum is not None and value < var.minimum:
        r.problems.append(f"AUTHSVC_{var.name} must be at least {var.minimum}")
    return value


def _flag_var(r: Reading, var: Var) -> bool:
    value = flag(r.get(var.name, "false") or "false")
    if value is None:
        r.problems.append(f"AUTHSVC_{var.name} must be true or false")
    return bool(value)


def _text(r: Reading, var: Var) -> str | None:
    return r.get(var.name, None if var.default is None else str(var.default))


def _var(name: str) -> Var:
    return next(v for v in VARS if v.name == name)


# ---------------------------------------------------------------- variables with their own rules


def _data_dir(r: Reading, var: Var) -> Path:
    return r.data_dir  # found before the table is read (the dev secrets live there)


def _encryption_key(r: Reading, var: Var) -> tuple[tuple[str, bytes], ...]:
    raw_key = r.get("ENCRYPTION_KEY") or r.dev_secrets.get("encryption_key")
    if raw_key is None:
        r.problems.append("AUTHSVC_ENCRYPTION_KEY is missing (32 random bytes, base64)")
        return ()
    try:
        return parse_encryption_keys(raw_key)
    except ConfigError as exc:
        r.problems.append(f"AUTHSVC_ENCRYPTION_KEY: {exc.detail}")
        return ()


def _encryption_key_id(r: Reading, var: Var) -> tuple[tuple[str, bytes], ...]:
    keys: tuple[tuple[str, bytes], ...] = r.values["ENCRYPTION_KEY"]
    encrypting = r.get("ENCRYPTION_KEY_ID")
    if encrypting is not None and keys:
        # Which key encrypts (default: the first). A key rolls out decrypt-only first, then a
        # second roll-out makes it the encrypting one: no replica ever meets a ciphertext
        # under a key it lacks (README, "A fleet of replicas").
        if encrypting not in {kid for kid, _ in keys}:
            r.problems.append(f"AUTHSVC_ENCRYPTION_KEY_ID: {encrypting!r} is not a key id of AUTHSVC_ENCRYPTION_KEY")
        else:
            keys = tuple(sorted(keys, key=lambda item: item[0] != encrypting))  # it first, others in order
    return keys


def _sms_provider(r: Reading, var: Var) -> str | None:
    provider = r.get("SMS_PROVIDER", "console" if r.dev else "twilio")
    if provider not in ("twilio", "console"):
        r.problems.append("AUTHSVC_SMS_PROVIDER must be 'twilio' or 'console'")
    if provider == "console" and not r.dev:
        r.problems.append("AUTHSVC_SMS_PROVIDER=console is for --dev only")
    return provider


def _twilio_required(r: Reading, var: Var) -> str | None:
    value = r.get(var.name)
    if r.values["SMS_PROVIDER"] == "twilio" and not value:
        r.problems.append(f"AUTHSVC_{var.name} is missing")
    return value


def _twilio_token(r: Reading, var: Var) -> str | None:
    token = r.get("TWILIO_AUTH_TOKEN")
    if r.values["SMS_PROVIDER"] == "twilio":
        if not token:
            r.problems.append("AUTHSVC_TWILIO_AUTH_TOKEN is missing")
        elif weak_secret(token, min_len=32):
            r.problems.append("AUTHSVC_TWILIO_AUTH_TOKEN is weak (32+ characters, not a placeholder)")
    return token


def _webhook_secret(r: Reading, var: Var) -> str | None:
    url = r.values["WEBHOOK_URL"]
    secret = r.get("WEBHOOK_SECRET") or (r.dev_secrets.get("webhook_secret") if url else None)
    if url:
        if not secret:
            r.problems.append("AUTHSVC_WEBHOOK_SECRET is missing (required with AUTHSVC_WEBHOOK_URL)")
        elif weak_secret(secret, min_len=32):
            r.problems.append("AUTHSVC_WEBHOOK_SECRET is weak (32+ characters, not a placeholder)")
    return secret


def _sms_countries(r: Reading, var: Var) -> tuple[str, ...]:
    countries: list[str] = []
    raw = r.get("SMS_COUNTRIES", ",".join(DEV_SMS_COUNTRIES) if r.dev else None)
    if raw is None:
        r.problems.append("AUTHSVC_SMS_COUNTRIES is missing (ISO 3166 codes SMS may go to, e.g. JP,US)")
        return ()
    import phonenumbers  # only to know which region codes exist

    for item in raw.split(","):
        code = item.strip().upper()
        if not code:
            continue
        if code not in phonenumbers.SUPPORTED_REGIONS:
            r.problems.append(f"AUTHSVC_SMS_COUNTRIES: {item.strip()!r} is not an ISO 3166 country code")
        elif code not in countries:
            countries.append(code)
    if not raw.replace(",", "").strip():
        r.problems.append("AUTHSVC_SMS_COUNTRIES lists no country")
    return tuple(countries)


def _twilio_lookup(r: Reading, var: Var) -> bool:
    raw = (r.get("TWILIO_LOOKUP", "false") or "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        r.problems.append("AUTHSVC_TWILIO_LOOKUP must be true or false")
    lookup = raw in ("true", "1", "yes")
    if lookup and r.values["SMS_PROVIDER"] != "twilio":
        r.problems.append("AUTHSVC_TWILIO_LOOKUP=true needs AUTHSVC_SMS_PROVIDER=twilio")
    return lookup


def _redis_url(r: Reading, var: Var) -> str | None:
    url = r.get("REDIS_URL")
    if url:
        scheme = url.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
            r.problems.append("AUTHSVC_REDIS_URL must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        elif scheme == "redis+sentinel":
            try:
                sentinel_parts(url)
            except ValueError as exc:
                r.problems.append(f"AUTHSVC_REDIS_URL: {exc} (redis+sentinel://host:port[,host:port]/service)")
    return url


def _required_outside_dev(r: Reading, var: Var) -> str | None:
    value = r.get(var.name)
    if not value and not r.dev:
        r.problems.append(f"AUTHSVC_{var.name} is missing")
    return value


def _database_pooler(r: Reading, var: Var) -> str | None:
    pooler = (r.get("DATABASE_POOLER", "none") or "none").strip().lower()
    if pooler not in ("none", "pgbouncer"):
        r.problems.append("AUTHSVC_DATABASE_POOLER must be 'none' or 'pgbouncer' (transaction pooling)")
    return None if pooler == "none" else pooler


def _bind(r: Reading, var: Var) -> str:
    bind = r.bind or r.get("BIND", "127.0.0.1:8000" if r.dev else "0.0.0.0:8000") or ""
    r.bind_host, r.bind_port = parse_bind(bind, r.problems)
    return bind


def _public_url(r: Reading, var: Var) -> str:
    default = "http://localhost:8000"
    if r.dev and r.bind_port:
        host = "localhost" if r.bind_host in ("", "0.0.0.0", "127.0.0.1", "::", "::1") else r.bind_host
        default = f"http://{'[' + host + ']' if ':' in host else host}:{r.bind_port}"
    return (r.get("PUBLIC_URL", default) or "").rstrip("/")


def _issuer(r: Reading, var: Var) -> str:
    issuer = r.get("ISSUER", r.values["PUBLIC_URL"]) or ""
    if not r.dev:
        for name, value in (("ISSUER", issuer), ("PUBLIC_URL", r.values["PUBLIC_URL"])):
            if not value.startswith("https://"):
                r.problems.append(f"AUTHSVC_{name} must be an https:// URL outside --dev")
    return issuer


def _origins(r: Reading, var: Var) -> tuple[str, ...]:
    raw = r.get("ORIGINS", r.values["PUBLIC_URL"]) or ""
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def _rp_id(r: Reading, var: Var) -> str | None:
    return r.get("RP_ID", urlsplit(r.values["PUBLIC_URL"]).hostname or "localhost")


def _trusted_proxies(r: Reading, var: Var) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    proxies = []
    for item in (r.get("TRUSTED_PROXIES", "") or "").split(","):
        if item.strip():
            try:
                proxies.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                r.problems.append(f"AUTHSVC_TRUSTED_PROXIES: {item.strip()!r} is not a CIDR")
    return tuple(proxies)


def _metrics_bind(r: Reading, var: Var) -> str | None:
    listen = (r.get("METRICS_BIND", "127.0.0.1:9100") or "").strip()
    if listen.lower() in ("off", "none"):
        return None
    if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", listen):
        r.problems.append("AUTHSVC_METRICS_BIND must be host:port (or 'off')")
    elif r.bind_port and int(listen.rpartition(":")[2]) == r.bind_port:
        r.problems.append("AUTHSVC_METRICS_BIND must use another port than the API (metrics are never public)")
    return listen


def _proxy_header(r: Reading, var: Var) -> str:
    header = (r.get("PROXY_HEADER", "x-forwarded-for") or "").strip().lower()
    if header not in ("x-forwarded-for", "forwarded"):
        r.problems.append("AUTHSVC_PROXY_HEADER must be 'X-Forwarded-For' or 'Forwarded'")
    return header


def _step_up_actions(r: Reading, var: Var) -> tuple[str, ...]:
    extra = []
    for item in (r.get("STEP_UP_ACTIONS", "") or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not _ACTION_RE.fullmatch(item) or len(item) > 64:
            r.problems.append(f"AUTHSVC_STEP_UP_ACTIONS: {item!r} is not a valid action name")
        elif item not in BUILTIN_STEP_UP_ACTIONS:
            extra.append(item)
    return BUILTIN_STEP_UP_ACTIONS + tuple(extra)


def _choice(r: Reading, var: Var) -> str | None:
    value = r.get(var.name, str(var.default))
    if value not in var.choices:
        quoted = [f"'{c}'" for c in var.choices]
        r.problems.append(f"AUTHSVC_{var.name} must be {' or '.join(quoted)}")
    return value


def _ms(r: Reading, var: Var) -> Any:
    value = _int(r, var)
    return value / 1000 if value is not _UNREADABLE else value  # the field holds seconds


def _low_value(r: Reading, var: Var) -> tuple[LowValueCap, ...]:
    try:
        return parse_low_value_caps(r.get("LOW_VALUE_EXEMPTION", "") or "")
    except ConfigError as exc:
        r.problems.append(f"AUTHSVC_LOW_VALUE_EXEMPTION: {exc.detail}")
        return ()


def _spc_icon(r: Reading, var: Var) -> str:
    icon = r.get("SPC_INSTRUMENT_ICON", "") or ""
    if icon and not re.match(r"^(https://|data:image/)", icon):
        r.problems.append("AUTHSVC_SPC_INSTRUMENT_ICON must be an https: or data:image/ URL")
    return icon


def _report_url(r: Reading, var: Var) -> str | None:
    return r.get("REPORT_URL", r.values["PUBLIC_URL"] + "/report?token={token}")


def _optional_path(r: Reading, var: Var) -> Path | None:
    value = r.get(var.name)
    return Path(value) if value else None


def _path(r: Reading, var: Var) -> Path:
    return Path(r.get(var.name, str(var.default)) or "")


def _spc_name(r: Reading, var: Var) -> str | None:
    return r.get("SPC_INSTRUMENT_NAME") or r.get("RP_NAME", "authsvc")


def _cli_only(r: Reading, var: Var) -> Any:
    return _UNREADABLE  # read by the CLI itself (config.operator_name), not a setting


READERS: dict[str, Callable[[Reading, Var], Any]] = {
    "DATA_DIR": _data_dir, "ENCRYPTION_KEY": _encryption_key, "ENCRYPTION_KEY_ID": _encryption_key_id,
    "SMS_PROVIDER": _sms_provider, "TWILIO_ACCOUNT_SID": _twilio_required, "TWILIO_FROM": _twilio_required,
    "TWILIO_AUTH_TOKEN": _twilio_token, "WEBHOOK_SECRET": _webhook_secret, "SMS_COUNTRIES": _sms_countries,
    "TWILIO_LOOKUP": _twilio_lookup, "REDIS_URL": _redis_url, "DATABASE_URL": _required_outside_dev,
    "DATABASE_POOLER": _database_pooler, "SMTP_URL": _required_outside_dev, "BIND": _bind,
    "PUBLIC_URL": _public_url, "ISSUER": _issuer, "ORIGINS": _origins, "RP_ID": _rp_id,
    "TRUSTED_PROXIES": _trusted_proxies, "METRICS_BIND": _metrics_bind, "PROXY_HEADER": _proxy_header,
    "STEP_UP_ACTIONS": _step_up_actions, "WORKER_CLASS": _choice, "DEFAULT_LOCALE": _choice,
    "LOW_VALUE_EXEMPTION": _low_value, "SPC_INSTRUMENT_ICON": _spc_icon, "REPORT_URL": _report_url,
    "METRICS_DIR": _optional_path, "MIGRATIONS_DIR": _path, "SPC_INSTRUMENT_NAME": _spc_name,
    "OPERATOR": _cli_only,
}
_GENERIC: dict[str, Callable[[Reading, Var], Any]] = {
    "int": _int, "ms": _ms, "flag": _flag_var, "text": _text, "url": _text, "secret": _text,
}
