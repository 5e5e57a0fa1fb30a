"""New-device sign-in notices and the "this wasn't me" report that freezes the account.

A login from a device not seen before for the account (the ``X-Device-Id`` the app keeps, or
else the User-Agent) sends a notice by SMS and email carrying a report link
(``AUTHSVC_REPORT_URL`` with ``{token}``). Presenting that token freezes the account and
revokes every session at once; only an operator unfreezes it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from typing import Any

from .. import errors
from ..config import Settings
from ..security import crypto
from .audit import audit
from .outbox import Outbox
from .sessions import RequestInfo, Sessions

REPORT_TOKEN_TTL = 7 * 24 * 3600


def device_key(info: RequestInfo) -> bytes:
    """The app's ``X-Device-Id`` when sent. Without it the User-Agent alone is the caller's to
    choose, so the client's network (/16 for IPv4, /48 for IPv6) is part of the key: copying a
    victim's User-Agent from another network still counts as a new device."""
    if info.device_id:
        basis = f"id:{info.device_id}"
    else:
        try:
            ip = ipaddress.ip_address(info.ip)
            network = ipaddress.ip_network(f"{ip}/{16 if ip.version == 4 else 48}", strict=False)
        except ValueError:
            network = info.ip
        basis = f"ua:{info.user_agent}|net:{network}"
    return hashlib.sha256(basis.encode()).digest()


class ReportService:
    def __init__(self, *, settings: Settings, store: Any, sessions: Sessions, outbox: Outbox) -> None:
        self._settings = settings
        self._store = store
        self._sessions = sessions
        self._outbox = outbox

    def report_link(self, tx: Any, account_id: str, reason: str) -> str:
        token = crypto.new_token()
        tx.run("insert_report_token", id=str(uuid.uuid4()), account_id=account_id,
               token_hash=crypto.hash_token(token), reason=reason, ttl=REPORT_TOKEN_TTL)
        return self._settings.report_url.replace("{token}", token)

    def seen_device(self, tx: Any, account: dict, session_id: str, info: RequestInfo) -> bool:
        """Record the device of a successful login; notify the owner when it is new.

        The first device an account ever signs in from is recorded without a notice (the owner
        has just registered); every later new device is announced. Returns whether it was new.
        """
        account_id = str(account["id"])
        had_devices = tx.scalar("known_device_count", account_id=account_id) > 0
        is_new = tx.scalar("see_device", account_id=account_id, device_key=device_key(info))
        if not (is_new and had_devices):
            return bool(is_new)
        link = self.report_link(tx, account_id, "new_device")
        from .sessions import device_name

        where = f"{device_name(info.user_agent)}, IP {info.ip}"
        self._outbox.sms(tx, account["phone"], f"New sign-in to your account ({where}). Not you? {link}")
        self._outbox.email(
            tx, account["email"], "New sign-in to your account",
            f"Your account was just signed in to from a device we have not seen before:\n\n  {where}\n\n"
            f"If this was you, nothing needs doing. If it was not, open this link at once: it freezes "
            f"the account and signs out every session.\n\n  {link}\n",
        )
        audit(tx, "system", "login.new_device", account_id, session_id=session_id, ip=info.ip)
        return True

    def report(self, token: str) -> None:
        """ "This wasn't me": freeze the account and revoke every session."""
        with self._store.transaction() as tx:
            row = tx.one("consume_report_token", token_hash=crypto.hash_token(token))
            if row is None:
                raise errors.InvalidToken("unknown, used or expired report token")
            account_id = str(row["account_id"])
            contact = tx.one("freeze_account", account_id=account_id)
            revoked = self._sessions.revoke_all(tx, account_id, "reported")
            audit(tx, "user", "account.frozen", account_id, via="report", reason=row["reason"], sessions=revoked)
            self._outbox.event(tx, "account.frozen", {"account_id": account_id, "reason": "reported"})
            self._outbox.sms(tx, contact["phone"],
                             "Your account is frozen after your report and every session was signed out. "
                             "Contact support to restore access.")
            self._outbox.email(
                tx, contact["email"], "Your account is frozen",
                "Thank you for reporting the sign-in. Your account is frozen and every session was "
                "signed out, so nobody can use it now. Contact support to restore access; you will "
                "set a new password then.",
            )
        self._outbox.kick()
