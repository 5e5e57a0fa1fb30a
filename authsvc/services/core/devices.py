"""Known devices: server-issued device tokens (the OWASP "device cookie").

Rules (README, "Holding against the list attack (credential stuffing)"):
- a device token is 256 random bits, stored only as its hash, bound to one account; the answer
  of a successful registration verify or login carries it, and the frontend sends it back as
  ``X-Device-Token`` on ``/v1/login``, ``/v1/login/mfa`` and ``/v1/password-resets``;
- a device is *known* to an account only while it presents a live token of that account: a
  client-chosen value (``X-Device-Id``, ``User-Agent``) never makes a device known;
- a token lives one year from its last use and dies with a password reset, "sign out
  everywhere", a freeze, a security report, a forced password change, or when a session opened
  with it is deleted (``DELETE /v1/sessions/{id}``: a stolen session's device stays known no
  longer);
- a successful login from a device that did not present a live token of the account is a new
  device: it gets a new token and the owner is notified (see ``reports``); a known device keeps
  its token (its life is extended).

Every login path (password + factor, passkey) asks this one service; ``identify`` reads only
and is cheap (one indexed lookup by hash), so it can run before any password hashing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ...security import crypto
from ...store import Tx

MAX_TOKEN_LENGTH = 128  # a real token is 43 characters; anything longer is not one of ours


@dataclass(frozen=True)
class DeviceGrant:
    """The device token to hand back after a successful login, and whether it was known."""

    token: str
    token_id: str
    known: bool


class KnownDevices:
    def __init__(self, *, token_ttl: int) -> None:
        self._ttl = token_ttl

    def identify(self, tx: Tx, raw_token: str | None) -> tuple[str, str] | None:
        """(token id, account id) of a live token, else None. Reads only."""
        if not raw_token or len(raw_token) > MAX_TOKEN_LENGTH:
            return None
        row = tx.one("live_device_token", token_hash=crypto.hash_token(raw_token))
        return (str(row["id"]), str(row["account_id"])) if row else None

    def known_to(self, tx: Tx, raw_token: str | None, account_id: str | None) -> str | None:
        """The token id when ``raw_token`` is a live token of ``account_id``, else None.

        The lookup is by the token alone, so it does the same work whether or not the account
        exists (``account_id`` None for an unknown email)."""
        found = self.identify(tx, raw_token)
        if found is None or account_id is None or found[1] != str(account_id):
            return None
        return found[0]

    def of_session(self, tx: Tx, session_id: str) -> str | None:
        """The token id of the device a session was opened from, while that token is live: a
        signed-in device holds the token its login answered with, so its session is as known as
        the device (a new device's first login makes it known too). Reads only."""
        token_id = tx.scalar("live_device_token_of_session", session_id=session_id)
        return str(token_id) if token_id else None

    def grant(self, tx: Tx, account_id: str, raw_token: str | None, token_id: str | None, *,
              device_name: str | None) -> DeviceGrant:
        """After a successful login: extend the live token of the account the device presented
        (``token_id``, from :meth:`known_to` in the same transaction), or issue a new one."""
        if token_id and raw_token and tx.one("touch_device_token", id=token_id, account_id=account_id, ttl=self._ttl):
            return DeviceGrant(raw_token, token_id, True)
        token, token_id = self.issue(tx, account_id, device_name=device_name)
        return DeviceGrant(token, token_id, False)

    def issue(self, tx: Tx, account_id: str, *, device_name: str | None) -> tuple[str, str]:
        """A new token for the account (registration verify, login from a new device)."""
        token = crypto.new_token()
        token_id = str(uuid.uuid4())
        tx.run("insert_device_token", id=token_id, account_id=account_id, token_hash=crypto.hash_token(token),
               device_name=(device_name or None), ttl=self._ttl)
        return token, token_id

    def revoke_all(self, tx: Tx, account_id: str, reason: str, *, keep: str | None = None) -> int:
        """Every device of the account becomes unknown (but ``keep``, a token id)."""
        return len(tx.all("revoke_device_tokens", account_id=account_id, reason=reason, keep=keep))

    def revoke(self, tx: Tx, account_id: str, token_id: str, reason: str) -> bool:
        """One device becomes unknown (e.g. the device of a session its owner deleted)."""
        return tx.one("revoke_device_token", id=token_id, account_id=account_id, reason=reason) is not None

    def live_count(self, tx: Tx, account_id: str) -> int:
        return int(tx.scalar("live_device_token_count", account_id=account_id) or 0)
