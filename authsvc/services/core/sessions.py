"""Sessions, access and refresh tokens, and bearer authentication.

- Access tokens are ES256 JWTs (``KeyService``); every bearer request also checks that the
  token's session is still live, so revoking a session stops its tokens here at once.
- Refresh tokens are opaque, stored hashed, rotated on every use; presenting a used one
  revokes the whole session (reuse detection), once, however many replays arrive together.
- A refresh records its address on the session; one from another device (a stolen refresh
  token) relabels the session and notifies the owner.
- A session ends ``session_max_age`` after its sign-in (``auth_time``) or
  ``session_idle_timeout`` after its last use (a bearer request or a refresh), however often
  it is refreshed; its refresh tokens never outlive it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ... import errors
from ...config import Settings
from ...security import crypto, useragent
from ...store import Store, Tx
from ..platform.audit import audit
from ..platform.keys import KeyService
from ..platform.outbox import Outbox
from .devices import KnownDevices
from .ids import require_uuid


@dataclass(frozen=True)
class FactorResult:
    """How a second factor (or a passkey) was proven: the method, the RFC 8176 ``amr`` values and
    the ``acr`` a session issued from it carries, and the factor used (none for a recovery code)."""

    method: str
    amr: tuple[str, ...]
    acr: str
    factor_id: str | None


@dataclass(frozen=True)
class RequestInfo:
    ip: str
    user_agent: str
    device_id: str | None  # X-Device-Id: a label for the session list, never proof of a known device
    device_token: str | None = None  # X-Device-Token as sent (see services.core.devices)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    acr: str
    amr: list[str]
    device_token: str | None = None  # set by a login (never by a refresh): see services.core.devices


@dataclass(frozen=True)
class Principal:
    account_id: str
    session_id: str
    acr: str
    amr: list[str]
    auth_time: int
    claims: dict


def device_name(user_agent: str) -> str:
    """A short human label for the session list, from the User-Agent."""
    ua = user_agent or ""
    for needle, name in (
        ("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Macintosh", "Mac"),
        ("Windows", "Windows"), ("Linux", "Linux"),
    ):
        if needle in ua:
            return name
    return ua[:64] or "Unknown device"


class Sessions:
    def __init__(
        self, *, settings: Settings, store: Store, keys: KeyService, outbox: Outbox, devices: KnownDevices
    ) -> None:
        self._settings = settings
        self._store = store
        self._keys = keys
        self._outbox = outbox
        self._devices = devices
        # Set by the app to ``ReportService.new_device`` (reports depend on sessions): the
        # owner's notice when a refresh comes from another device.
        self.on_new_device: Callable[[Tx, dict, str, RequestInfo], None] | None = None

    # ------------------------------------------------------------------ issuing
    def open(
        self, tx: Tx, account: dict, result: FactorResult, info: RequestInfo, *, device_token_id: str | None = None
    ) -> TokenPair:
        """A new session after a successful second factor (inside the caller's transaction);
        ``device_token_id`` is the known device it was opened from."""
        session = tx.one(
            "insert_session",
            id=str(uuid.uuid4()),
            account_id=str(account["id"]),
            acr=result.acr,
            amr=list(result.amr),
            ip=info.ip,
            user_agent=info.user_agent,
            device_id=info.device_id,
            device_name=device_name(info.user_agent),
            device_token_id=device_token_id,
        )
        assert session is not None  # INSERT ... RETURNING
        return self._issue(tx, session)

    def _lifetime(self) -> dict[str, int]:
        return {"max_age": self._settings.session_max_age, "idle": self._settings.session_idle_timeout}

    def _issue(self, tx: Tx, session: dict) -> TokenPair:
        refresh = crypto.new_token()
        tx.run(
            "insert_refresh_token",
            id=str(uuid.uuid4()),
            session_id=str(session["id"]),
            token_hash=crypto.hash_token(refresh),
            **self._lifetime(),
        )
        now = int(time.time())
        ttl = self._settings.access_token_ttl
        claims = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": str(session["account_id"]),
            "sid": str(session["id"]),
            "iat": now,
            "exp": now + ttl,
            "auth_time": int(_epoch(session["auth_time"])),
            "acr": session["acr"],
            "amr": list(session["amr"]),
            "jti": str(uuid.uuid4()),
            "client_id": self._settings.frontend_client_id,  # RFC 9068: the frontend's client
        }
        return TokenPair(self._keys.sign(claims), refresh, ttl, str(session["id"]), session["acr"],
                         list(session["amr"]))

    def refresh(self, refresh_token: str, info: RequestInfo | None = None) -> TokenPair:
        """Rotate a refresh token. The session row is locked before its tokens (the one lock
        order of every path that changes them), so concurrent presentations of one token
        queue: the first rotates it, every later one is a replay and answers 401, and the
        session is revoked (and audited) exactly once.

        The refresh's address becomes the session's (the session list shows where it is used
        now). A refresh from another device than the session's (an ``X-Device-Token`` that is
        not the session's, or else a browser or system family other than the session's
        User-Agent) is what a stolen refresh token looks like: the session is relabelled with
        that device and the owner gets the new-device notice (``on_new_device``)."""
        invalid = errors.InvalidToken("the refresh token is not valid")
        token_hash = crypto.hash_token(refresh_token)
        with self._store.transaction() as tx:
            session = tx.one("lock_session_of_refresh_token", token_hash=token_hash, **self._lifetime())
            if session is None:
                raise invalid
            if tx.one("use_refresh_token", token_hash=token_hash) is not None:
                if not session["live"] or session["account_status"] != "active":
                    raise invalid
                moved = info is not None and self._other_device(tx, session, info)
                tx.run("session_refreshed", session_id=str(session["id"]), ip=info.ip if info else None,
                       user_agent=info.user_agent if moved and info is not None else None,
                       device_name=device_name(info.user_agent) if moved and info is not None else None)
                if moved and info is not None and self.on_new_device is not None:
                    account = tx.one("account_by_id", account_id=str(session["account_id"]))
                    assert account is not None  # the session's account (a foreign key)
                    self.on_new_device(tx, account, str(session["id"]), info)
                outcome: TokenPair | errors.AuthsvcError = self._issue(tx, session)
            else:
                known = tx.one("refresh_token_session", token_hash=token_hash)
                if known is None or known["used_at"] is None:
                    raise invalid  # expired, never used
                # Reuse of a rotated token: someone holds a copy. Kill the whole session.
                account_id, session_id = str(session["account_id"]), str(session["id"])
                if self._revoke(tx, account_id, session_id, "refresh_token_reuse"):
                    audit(tx, "system", "session.refresh_reuse", account_id, session_id=session_id)
                outcome = invalid
        self._outbox.kick()
        if isinstance(outcome, errors.AuthsvcError):
            raise outcome
        return outcome

    def _other_device(self, tx: Tx, session: dict, info: RequestInfo) -> bool:
        if info.device_token:
            found = self._devices.identify(tx, info.device_token)
            if session["device_token_id"] is not None:
                return found is None or found[0] != str(session["device_token_id"])
        was, now = useragent.describe(session["user_agent"]), useragent.describe(info.user_agent)
        return (was.browser, was.os) != (now.browser, now.os)

    # ------------------------------------------------------------------ checking
    def authenticate(self, access_token: str, *, ip: str | None = None) -> Principal:
        claims = self._keys.verify(access_token)
        # One statement, one round trip: the session must be live now (revocation takes effect
        # at once); last_seen_at is refreshed at most every 30 seconds.
        session = self._store.one(
            "live_session_touch", session_id=claims["sid"], account_id=claims["sub"], ip=ip, **self._lifetime()
        )
        if session is None or session["account_status"] != "active":
            raise errors.InvalidToken("the session of this token has ended")
        return Principal(
            account_id=claims["sub"],
            session_id=claims["sid"],
            acr=claims["acr"],
            amr=list(claims["amr"]),
            auth_time=int(_epoch(session["auth_time"])),
            claims=claims,
        )

    def introspect(self, token: str) -> dict:
        """RFC 7662: the token's claims while it and its session are live, else inactive."""
        try:
            p = self.authenticate(token)
        except errors.InvalidToken:
            return {"active": False}
        c = p.claims
        answer = {
            "active": True, "sub": c["sub"], "sid": c["sid"], "acr": c["acr"], "amr": c["amr"],
            "auth_time": c["auth_time"], "iat": c["iat"], "exp": c["exp"], "iss": c["iss"],
            "aud": c["aud"], "token_type": "Bearer",
        }
        if isinstance(c.get("client_id"), str):  # RFC 7662's client_id (tokens made before it had none)
            answer["client_id"] = c["client_id"]
        return answer

    # ------------------------------------------------------------------ managing
    def list(self, principal: Principal) -> list[dict]:
        with self._store.transaction() as tx:
            rows = tx.all("sessions_of_account", account_id=principal.account_id, **self._lifetime())
        return [
            {
                "session_id": str(r["id"]),
                "created_at": _iso(r["created_at"]),
                "last_seen_at": _iso(r["last_seen_at"]),
                "ip": r["ip"],
                "user_agent": r["user_agent"],
                "device_name": r["device_name"],
                "current": str(r["id"]) == principal.session_id,
            }
            for r in rows
        ]

    def revoke(self, principal: Principal, session_id: str, *, reason: str = "user") -> None:
        """End one session. Deleted by its owner (``reason="user"``, not a logout), the device
        it was opened from becomes unknown too: a session deleted as not one's own may be a
        stolen one, and its device token with it."""
        require_uuid(session_id, errors.NotFound("no such session"))
        with self._store.transaction() as tx:
            if not self._revoke(tx, principal.account_id, session_id, reason):
                raise errors.NotFound("no such session")
            if reason == "user":
                token_id = tx.scalar("session_device_token", session_id=session_id)
                if token_id:
                    self._devices.revoke(tx, principal.account_id, str(token_id), "session_deleted")
        self._outbox.kick()

    def logout(self, principal: Principal) -> None:
        self.revoke(principal, principal.session_id, reason="logout")

    def revoke_others(self, principal: Principal) -> int:
        """ "Sign out everywhere": every other session ends and every other device becomes unknown
        (the device of the current session stays known)."""
        with self._store.transaction() as tx:
            keep = tx.scalar("session_device_token", session_id=principal.session_id)
            self._devices.revoke_all(tx, principal.account_id, "signed_out_everywhere",
                                     keep=str(keep) if keep else None)
            rows = tx.all("revoke_other_sessions", account_id=principal.account_id,
                          keep=principal.session_id, reason="user")
            for r in rows:
                tx.run("kill_refresh_tokens_of_session", session_id=r["id"])
                self._outbox.event(tx, "session.revoked",
                                   {"account_id": principal.account_id, "session_id": str(r["id"])})
        self._outbox.kick()
        return len(rows)

    def revoke_all(self, tx: Tx, account_id: str, reason: str) -> int:
        """Revoke every session of the account and kill their refresh tokens (caller's transaction)."""
        rows = tx.all("revoke_all_sessions", account_id=account_id, reason=reason)
        for r in rows:
            tx.run("kill_refresh_tokens_of_session", session_id=r["id"])
            self._outbox.event(tx, "session.revoked",
                               {"account_id": account_id, "session_id": str(r["id"]), "reason": reason})
        return len(rows)

    def _revoke(self, tx: Tx, account_id: str, session_id: str, reason: str) -> bool:
        if tx.one("revoke_session", account_id=account_id, session_id=session_id, reason=reason) is None:
            return False
        tx.run("kill_refresh_tokens_of_session", session_id=session_id)
        self._outbox.event(tx, "session.revoked",
                           {"account_id": account_id, "session_id": session_id, "reason": reason})
        return True


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
