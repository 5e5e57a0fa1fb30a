"""New-device sign-in notices and the "this wasn't me" report that freezes the account.

A successful login from a device that did not present a live device token of the account
(``services.core.devices``: only a server-issued token makes a device known, never a client-chosen
``X-Device-Id`` or User-Agent) sends a notice by SMS and email carrying a report link
(``AUTHSVC_REPORT_URL`` with ``{token}``). Presenting that token freezes the account, revokes
every session and makes every device unknown at once; only an operator unfreezes it.

The link opens a page (``GET /report``) that only reads what the link is about (``describe``):
mail scanners and link previews follow links, so nothing changes until the owner confirms with
the page's button (``report``). A link records what it reports in its own row (the reason,
the time, the parsed browser and OS families and the IP), never the raw User-Agent.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ... import errors, i18n
from ...policy import ONE_TIME
from ...security import crypto, useragent
from ...store import Store, Tx
from ..core.devices import KnownDevices
from ..core.sessions import RequestInfo, Sessions
from ..platform import messages
from ..platform.audit import audit
from ..platform.outbox import Outbox


@dataclass(frozen=True)
class ReportSubject:
    """What a live report link is about, for the page that asks the owner to confirm."""

    reason: str  # new_device, phone_changed, email_changed, factor_guessing
    at: datetime
    locale: str
    browser: str | None
    os: str | None
    ip: str | None
    frozen: bool


class ReportService:
    def __init__(
        self, *, report_url: str, store: Store, sessions: Sessions, devices: KnownDevices, outbox: Outbox
    ) -> None:
        self._report_url = report_url  # with {token}
        self._store = store
        self._sessions = sessions
        self._devices = devices
        self._outbox = outbox

    def report_link(self, tx: Tx, account_id: str, reason: str, info: RequestInfo | None = None) -> str:
        token = crypto.new_token()
        detail = {}
        if info is not None:
            device = useragent.describe(info.user_agent)
            detail = {"browser": device.browser, "os": device.os, "ip": info.ip}
        tx.run("insert_report_token", id=str(uuid.uuid4()), account_id=account_id,
               token_hash=crypto.hash_token(token), reason=reason, detail=json.dumps(detail),
               ttl=ONE_TIME.report_token_ttl)
        return self._report_url.replace("{token}", token)

    def new_device(self, tx: Tx, account: dict, session_id: str, info: RequestInfo) -> None:
        """Notify the owner of a successful login from a device that was not known."""
        account_id = str(account["id"])
        link = self.report_link(tx, account_id, "new_device", info)
        locale = messages.locale_of(account)
        device = messages.device(locale, info.user_agent)
        self._outbox.sms(tx, account["phone"], messages.sms(locale, "new_device", device=device, link=link))
        self._outbox.email(tx, account["email"], *messages.email(
            locale, "new_device", device=device, ip=info.ip, link=link,
            time=i18n.format_time(datetime.now(UTC), locale)))
        audit(tx, "system", "login.new_device", account_id, session_id=session_id, ip=info.ip)

    def factor_guessing(self, tx: Tx, account: dict, info: RequestInfo | None, *, failures: int) -> None:
        """Notify the owner that a known device (or a session opened on one) gave so many wrong
        second-factor answers that it now waits: its token or session may be stolen."""
        account_id = str(account["id"])
        link = self.report_link(tx, account_id, "factor_guessing", info)
        locale = messages.locale_of(account)
        device = messages.device(locale, info.user_agent if info else None)
        self._outbox.sms(tx, account["phone"], messages.sms(locale, "known_device_guessing", link=link))
        self._outbox.email(tx, account["email"], *messages.email(
            locale, "known_device_guessing", failures=failures, device=device,
            ip=(info.ip if info else None) or "-", link=link,
            time=i18n.format_time(datetime.now(UTC), locale)))

    def describe(self, token: str) -> ReportSubject | None:
        """What a live link is about (None for an unknown, used or expired one); changes nothing."""
        with self._store.transaction() as tx:
            row = tx.one("live_report_token", token_hash=crypto.hash_token(token))
        if row is None:
            return None
        detail = row["detail"] or {}
        return ReportSubject(
            reason=row["reason"], at=row["created_at"], locale=messages.locale_of(row),
            browser=detail.get("browser"), os=detail.get("os"), ip=detail.get("ip"),
            frozen=row["status"] == "frozen",
        )

    def report(self, token: str) -> str:
        """ "This wasn't me": freeze the account and revoke every session; returns its locale."""
        with self._store.transaction() as tx:
            row = tx.one("consume_report_token", token_hash=crypto.hash_token(token))
            if row is None:
                raise errors.InvalidToken("unknown, used or expired report token")
            account_id = str(row["account_id"])
            contact = tx.one("freeze_account", account_id=account_id)
            assert contact is not None  # the token's account (a foreign key)
            revoked = self._sessions.revoke_all(tx, account_id, "reported")
            devices = self._devices.revoke_all(tx, account_id, "reported")
            audit(tx, "user", "account.frozen", account_id, via="report", reason=row["reason"], sessions=revoked,
                  devices=devices)
            self._outbox.event(tx, "account.frozen", {"account_id": account_id, "reason": "reported"})
            locale = messages.locale_of(contact)
            self._outbox.sms(tx, contact["phone"], messages.sms(locale, "reported_frozen"))
            self._outbox.email(tx, contact["email"], *messages.email(locale, "reported_frozen"))
        self._outbox.kick()
        return locale
