"""SMS delivery (Twilio's Messages API in production, stdout in --dev) and the optional line-type
check (Twilio Lookup v2). The only module that imports twilio.

Message bodies carry one-time codes: they are never logged and never put into an error.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..config import Settings
from ..errors import ConfigError, DeliveryError


class SmsSender(Protocol):
    def send(self, to: str, body: str) -> str:
        """Hand one SMS to the provider; return its message id. Raises DeliveryError."""
        ...


def provider_text(text: object, body: str) -> str:
    """A provider's error message fit for logs: the message body (which carries a code) and any
    run of 4+ digits (codes, phone numbers) masked, one line, at most 200 characters."""
    out = str(text or "").replace("\r", " ").replace("\n", " ")
    if body:
        out = out.replace(body, "[body]")
    return re.sub(r"\d{4,}", lambda m: "#" * len(m.group()), out)[:200]


class LineTypeLookup(Protocol):
    def line_type(self, phone: str) -> str:
        """Twilio's line type of an E.164 number (``mobile``, ``landline``, ``nonFixedVoip``,
        ``premium``, ... or ``unknown``). Raises DeliveryError when Twilio cannot answer."""
        ...


class _RebasedHttpClient(TwilioHttpClient):
    """Sends requests for ``https://*.twilio.com`` (api., lookups., ...) to ``api_base`` instead
    (path and query kept): one local fake then serves Messages and Lookup alike."""

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        base = urlsplit(api_base)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ConfigError("twilio api_base must be an http(s):// URL")
        self._scheme, self._netloc, self._prefix = base.scheme, base.netloc, base.path.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com")):
            url = urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, ""))
        return super().request(method, url, *args, **kwargs)


class TwilioSms:
    def __init__(
        self,
        account_sid: str | None,
        auth_token: str | None,
        from_number: str | None,
        *,
        api_base: str | None = None,
        timeout: float = 10,
    ) -> None:
        if not (account_sid and auth_token and from_number):
            raise ConfigError("twilio account_sid, auth_token and from_number are required")
        self._client = _client(account_sid, auth_token, api_base, timeout)
        self._from = from_number

    def send(self, to: str, body: str) -> str:
        try:
            message = self._client.messages.create(to=to, from_=self._from, body=body)
        except TwilioRestException as exc:
            raise DeliveryError(
                f"Twilio rejected the message (HTTP {exc.status}, code {exc.code}): {provider_text(exc.msg, body)}"
            ) from exc
        except TwilioException as exc:
            code = getattr(exc, "code", None)
            raise DeliveryError(f"Twilio error ({type(exc).__name__}, code {code})") from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"Twilio unreachable ({type(exc).__name__})") from exc
        except json.JSONDecodeError as exc:
            raise DeliveryError("Twilio sent an unreadable response") from exc
        if not message.sid:
            raise DeliveryError("Twilio response carried no message sid")
        return message.sid


class TwilioLookup:
    """Line type intelligence from Twilio Lookup v2 (a paid request per number: callers cache)."""

    def __init__(self, account_sid: str | None, auth_token: str | None, *, api_base: str | None = None,
                 timeout: float = 5) -> None:
        if not (account_sid and auth_token):
            raise ConfigError("twilio account_sid and auth_token are required for Lookup")
        self._client = _client(account_sid, auth_token, api_base, timeout)

    def line_type(self, phone: str) -> str:
        try:
            result = self._client.lookups.v2.phone_numbers(phone).fetch(fields="line_type_intelligence")
        except TwilioRestException as exc:
            raise DeliveryError(f"Twilio Lookup refused (HTTP {exc.status}, code {exc.code})") from exc
        except TwilioException as exc:
            raise DeliveryError(f"Twilio Lookup error ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"Twilio Lookup unreachable ({type(exc).__name__})") from exc
        except json.JSONDecodeError as exc:
            raise DeliveryError("Twilio Lookup sent an unreadable response") from exc
        if result.valid is False:
            return "invalid"
        info = result.line_type_intelligence
        kind = info.get("type") if isinstance(info, dict) else None
        return kind if isinstance(kind, str) and kind else "unknown"


def _client(account_sid: str, auth_token: str, api_base: str | None, timeout: float) -> Client:
    http = _RebasedHttpClient(api_base, timeout=timeout) if api_base else TwilioHttpClient(timeout=timeout)
    return Client(account_sid, auth_token, http_client=http)


class ConsoleSms:
    """--dev only: prints the message (code included) to stdout."""

    def send(self, to: str, body: str) -> str:
        print(f"SMS to {to}: {body}", flush=True)
        return "console-" + secrets.token_hex(16)


def build_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_provider == "twilio":
        return TwilioSms(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_from,
            api_base=settings.twilio_api_base,
        )
    if settings.sms_provider == "console":
        if not settings.dev:
            raise ConfigError("console SMS prints codes to stdout and is for --dev only")
        return ConsoleSms()
    raise ConfigError(f"unknown sms_provider {settings.sms_provider!r}")


def build_line_type_lookup(settings: Settings) -> LineTypeLookup | None:
    """Twilio Lookup when AUTHSVC_TWILIO_LOOKUP is on, else None (offline checks only)."""
    if not settings.twilio_lookup:
        return None
    return TwilioLookup(settings.twilio_account_sid, settings.twilio_auth_token, api_base=settings.twilio_api_base)
