"""Email delivery: SMTP in production, stdout in --dev. The only module that imports smtplib.

``smtp_url`` forms (credentials are percent-decoded):

* ``smtp://host[:25]``                       plain, no authentication
* ``smtp+starttls://user:pass@host[:587]``   STARTTLS required before login
* ``smtps://user:pass@host[:465]``           implicit TLS

Message bodies carry one-time codes: they are never logged and never put into an error.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from typing import Protocol
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import ConfigError, DeliveryError

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class EmailSender(Protocol):
    def send(self, to: str, subject: str, body: str, *, message_id: str | None = None) -> str:
        """Hand one email to the provider; return its Message-ID. Raises DeliveryError.

        ``message_id`` (letters, digits, ``.``, ``_``, ``-``) fixes the Message-ID's local part,
        so that the same message sent twice is recognisably one message (idempotency key)."""
        ...


_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _message_id(key: str | None, from_addr: str) -> str:
    domain = _msgid_domain(from_addr)
    if key is None:
        return make_msgid(domain=domain)
    if not _KEY.fullmatch(key):
        raise DeliveryError("invalid message id key")
    return f"<{key}@{domain}>"


def _recipient(to: str, subject: str) -> str:
    """The single bare address in ``to``; DeliveryError on header injection or several addresses."""
    if any(ch in value for value in (to, subject) for ch in "\r\n\0"):
        raise DeliveryError("line breaks are not allowed in email headers")
    addresses = getaddresses([to])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        raise DeliveryError("recipient must be exactly one email address")
    return addresses[0][1]


def _safe_reply(reply: object, body: str) -> str:
    """An SMTP server's reply fit for logs: no message body, runs of 4+ digits (codes) masked,
    one line, at most 200 characters."""
    text = " ".join(str(reply or "").split())
    if body:
        text = text.replace(body, "[body]")
    return re.sub(r"\d{4,}", lambda m: "#" * len(m.group()), text)[:200]


def _msgid_domain(from_addr: str) -> str:
    # make_msgid() without a domain calls socket.getfqdn(), which may block on DNS.
    return parseaddr(from_addr)[1].rpartition("@")[2] or "localhost"


class SmtpEmail:
    def __init__(self, smtp_url: str, from_addr: str, *, timeout: float = 10) -> None:
        url = urlsplit(smtp_url)
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise ConfigError("smtp_url must be smtp://, smtp+starttls:// or smtps://host[:port]")
        try:
            port = url.port or _DEFAULT_PORTS[url.scheme]
        except ValueError:
            raise ConfigError("smtp_url has an invalid port") from None
        self._user = unquote(url.username) if url.username else None
        self._password = unquote(url.password or "")
        if self._user and url.scheme == "smtp":
            raise ConfigError("smtp:// sends credentials in clear; use smtp+starttls:// or smtps://")
        if any(ch in from_addr for ch in "\r\n\0") or "@" not in parseaddr(from_addr)[1]:
            raise ConfigError("email_from must be one email address")
        self._scheme, self._host, self._port = url.scheme, url.hostname, port
        self._from = from_addr
        self._envelope_from = parseaddr(from_addr)[1]
        self._timeout = timeout

    def send(self, to: str, subject: str, body: str, *, message_id: str | None = None) -> str:
        rcpt = _recipient(to, subject)
        msg = EmailMessage()
        msg["From"] = self._from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = _message_id(message_id, self._from)
        msg.set_content(body)
        try:
            self._deliver(msg, rcpt)
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(
                f"SMTP server refused the message ({exc.smtp_code} {_safe_reply(reply, body)})") from exc
        except (smtplib.SMTPException, OSError) as exc:  # OSError covers socket, ssl and timeouts
            raise DeliveryError(f"SMTP delivery failed ({type(exc).__name__})") from exc
        return msg["Message-ID"]

    def _deliver(self, msg: EmailMessage, rcpt: str) -> None:
        context = ssl.create_default_context()
        if self._scheme == "smtps":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=context)
        else:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if self._scheme == "smtp+starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError("SMTP server does not offer STARTTLS")
                smtp.starttls(context=context)
                smtp.ehlo()
            if self._user:
                smtp.login(self._user, self._password)
            smtp.send_message(msg, from_addr=self._envelope_from, to_addrs=[rcpt])
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


class ConsoleEmail:
    """--dev only: prints the message (code included) to stdout."""

    def __init__(self, from_addr: str = "authsvc <no-reply@localhost>") -> None:
        self._from = from_addr

    def send(self, to: str, subject: str, body: str, *, message_id: str | None = None) -> str:
        _recipient(to, subject)
        print(f"Email to {to}: {subject}\n{body}", flush=True)
        return _message_id(message_id, self._from)


def build_email_sender(settings: Settings) -> EmailSender:
    if settings.smtp_url:
        return SmtpEmail(settings.smtp_url, settings.email_from)
    if not settings.dev:
        raise ConfigError("smtp_url is required outside --dev (console email prints codes)")
    return ConsoleEmail(settings.email_from)
