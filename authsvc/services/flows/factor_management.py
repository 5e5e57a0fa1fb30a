"""Enrolling and managing second factors (TOTP, WebAuthn) and recovery codes.

- An enrollment token (from registration, or from the SMS login path) may enroll the FIRST
  factor of its account only; it dies when that factor becomes active.
- Later changes need a bearer token plus step-up; the API layer checks the step-up and tells
  this service through ``Actor.step_up``.
- The first active factor returns 10 recovery codes; adding or removing a factor notifies the
  phone and the email; the last factor cannot be removed.
"""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ... import errors
from ...policy import ONE_TIME
from ...security import contexts, crypto, totp
from ...security.crypto import Cipher
from ...store import Store, Tx
from ..core.attempts import failed_attempt
from ..core.ids import require_uuid
from ..factors.second_factor import SecondFactors
from ..platform import messages
from ..platform.audit import audit
from ..platform.outbox import Outbox
from .step_up import StepUpService


@dataclass(frozen=True)
class Actor:
    """Who asks: an enrollment token's account, or a session (with an optional step-up token)."""

    account_id: str
    enrollment_token_id: str | None = None
    session_id: str | None = None
    step_up_token: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def issue_enrollment_token(tx: Tx, account_id: str, ttl: int) -> str:
    """A short-lived token (stored hashed) that may enroll the account's first factor only."""
    token = crypto.new_token()
    tx.one("insert_enrollment_token", id=str(uuid.uuid4()), account_id=account_id,
           token_hash=crypto.hash_token(token), ttl=ttl)
    return token


def client_challenge(credential: Any) -> bytes:
    """The challenge the browser signed, read from clientDataJSON (verified again by py_webauthn)."""
    try:
        data = json.loads(credential) if isinstance(credential, str) else credential
        client_data = data["response"]["clientDataJSON"]
        raw = base64.urlsafe_b64decode(client_data + "=" * (-len(client_data) % 4))
        challenge = json.loads(raw)["challenge"]
        return base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise errors.VerificationFailed("the credential is malformed") from None


class FactorService:
    def __init__(
        self,
        *,
        totp_issuer: str,
        store: Store,
        cipher: Cipher,
        factors: SecondFactors,
        step_up: StepUpService,
        outbox: Outbox,
    ) -> None:
        self._totp_issuer = totp_issuer
        self._store = store
        self._cipher = cipher
        self._factors = factors
        self._step_up = step_up
        self._outbox = outbox

    # ------------------------------------------------------------------ authorisation
    def enrollment_actor(self, token: str) -> Actor:
        with self._store.transaction() as tx:
            row = tx.one("enrollment_token_lookup", token_hash=crypto.hash_token(token))
        if row is None:
            raise errors.InvalidToken("unknown, used or expired enrollment token")
        return Actor(account_id=str(row["account_id"]), enrollment_token_id=str(row["id"]))

    def _authorize(self, tx: Tx, actor: Actor, action: str | None) -> dict:
        """Lock the account row and check this actor may make this change.

        Enrollment tokens may only act while the account has no active factor. Sessions need a
        step-up token for ``action`` (consumed in this transaction, so a failed change keeps
        it); steps that finish a ceremony begun under step-up (``action=None``) need none.
        """
        account = tx.one("lock_account", account_id=actor.account_id)
        if account is None or account["status"] != "active":
            raise errors.InvalidToken("unknown or frozen account")
        if actor.enrollment_token_id is not None:
            if tx.scalar("active_factor_count", account_id=actor.account_id):
                raise errors.InsufficientScope("an enrollment token can only enroll the first second factor")
        elif action is not None:
            self._step_up.consume(tx, account_id=actor.account_id, session_id=actor.session_id,
                                  action=action, token=actor.step_up_token)
        return account

    def _activated(self, tx: Tx, actor: Actor, account: dict, factor_id: str, kind: str) -> list[str] | None:
        """Bookkeeping after a factor became active; returns recovery codes for the first one."""
        codes = None
        if tx.scalar("active_factor_count", account_id=actor.account_id) == 1:
            codes = self._factors.issue_recovery_codes(tx, actor.account_id)
            tx.run("enrollment_tokens_consume_all", account_id=actor.account_id)
        audit(tx, "user", "factor.added", actor.account_id, factor_id=factor_id, type=kind)
        self._outbox.event(tx, "factor.added", {"account_id": actor.account_id, "factor_id": factor_id, "type": kind})
        self._notify(tx, account, "factor_added", kind)
        return codes

    def _notify(self, tx: Tx, account: dict, key: str, kind: str | None = None) -> None:
        locale = messages.locale_of(account)
        factor = messages.factor_name(locale, kind) if kind else ""
        self._outbox.sms(tx, account["phone"], messages.sms(locale, key, factor=factor))
        self._outbox.email(tx, account["email"], *messages.email(locale, key, factor=factor))

    # ------------------------------------------------------------------ listing
    def list(self, account_id: str) -> list[dict]:
        with self._store.transaction() as tx:
            rows = tx.all("factors_of_account", account_id=account_id)
        return [
            {
                "factor_id": str(r["id"]),
                "type": r["type"],
                "passkey": r["passkey"],
                "payment": r["payment"],
                "name": r["name"],
                "created_at": _iso(r["created_at"]),
                "last_used_at": _iso(r["last_used_at"]),
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ TOTP
    def begin_totp(self, actor: Actor, name: str | None) -> dict:
        factor_id = str(uuid.uuid4())
        secret = totp.new_secret()
        with self._store.transaction() as tx:
            account = self._authorize(tx, actor, "factor.add")
            tx.run(
                "insert_totp_factor",
                id=factor_id,
                account_id=actor.account_id,
                name=name or "Authenticator app",
                secret_enc=self._cipher.encrypt(secret.encode(), aad=contexts.totp_secret_aad(factor_id)),
                ttl=ONE_TIME.factor_pending_ttl,
            )
        uri = totp.provisioning_uri(secret, account_name=account["email"], issuer=self._totp_issuer)
        return {"factor_id": factor_id, "secret": secret, "otpauth_uri": uri, "expires_in": ONE_TIME.factor_pending_ttl}

    def confirm_totp(self, actor: Actor, factor_id: str, code: str) -> dict:
        failed = errors.VerificationFailed("the code does not match this pending factor")
        require_uuid(factor_id, failed)
        with self._store.transaction() as tx:
            account = self._authorize(tx, actor, None)  # the pending factor was made under step-up
            row = tx.one("lock_pending_totp", id=factor_id, account_id=actor.account_id,
                         max_attempts=ONE_TIME.max_attempts)
            if row is None:
                raise failed
            secret = self._cipher.decrypt(row["totp_secret_enc"], aad=contexts.totp_secret_aad(factor_id)).decode()
            step = totp.verify(secret, code, last_step=None) if totp.is_well_formed(code) else None
            if step is None:
                failed_attempt(tx, "pending_totp_failed", factor_id, max_attempts=ONE_TIME.max_attempts)
                result: dict | None = None
            else:
                tx.one("activate_totp", id=factor_id, step=step)
                codes = self._activated(tx, actor, account, factor_id, "totp")
                result = {"factor_id": factor_id, "status": "active"}
                if codes:
                    result["recovery_codes"] = codes
        self._outbox.kick()
        if result is None:
            raise failed
        return result

    # ------------------------------------------------------------------ WebAuthn
    def webauthn_options(self, actor: Actor, *, passkey: bool = False, payment: bool = False) -> dict:
        """Creation options; ``passkey`` asks for a discoverable credential (resident key and
        user verification required) that can later sign in on its own; ``payment`` for a
        payment credential (Secure Payment Confirmation: the WebAuthn ``payment`` extension)."""
        with self._store.transaction() as tx:
            account = self._authorize(tx, actor, "factor.add")
            existing = [bytes(r["credential_id"]) for r in tx.all("active_webauthn_credential_ids",
                                                                   account_id=actor.account_id)]
            options, challenge = self._factors.webauthn.registration_options(
                user_id=bytes(account["webauthn_user_id"]),
                user_name=account["email"],
                user_display_name=account["email"],
                exclude_credential_ids=existing,
                passkey=passkey,
                payment=payment,
            )
            tx.run("insert_webauthn_challenge", id=str(uuid.uuid4()), account_id=actor.account_id,
                   purpose="register", challenge=challenge, passkey=passkey, payment=payment,
                   ttl=ONE_TIME.factor_challenge_ttl)
        return options

    def add_webauthn(self, actor: Actor, credential: Any, name: str | None) -> dict:
        challenge = client_challenge(credential)
        factor_id = str(uuid.uuid4())
        try:
            with self._store.transaction() as tx:
                account = self._authorize(tx, actor, None)  # the challenge was made under step-up
                made = tx.one("consume_webauthn_challenge", account_id=actor.account_id,
                              purpose="register", challenge=challenge)
                if not made:
                    raise errors.VerificationFailed("unknown, used or expired challenge")
                try:
                    cred = self._factors.webauthn.verify_registration(
                        credential=credential, expected_challenge=challenge
                    )
                except errors.InvalidFactor as exc:
                    raise errors.VerificationFailed(exc.detail) from None
                tx.run(
                    "insert_webauthn_factor",
                    id=factor_id,
                    account_id=actor.account_id,
                    name=name or ("Passkey" if made["passkey"] else "Security key"),
                    credential_id=cred.credential_id,
                    public_key=cred.public_key,
                    sign_count=cred.sign_count,
                    aaguid=cred.aaguid,
                    transports=list(cred.transports),
                    backup_eligible=cred.backup_eligible,
                    backed_up=cred.backed_up,
                    passkey=made["passkey"],
                    payment=made["payment"],
                )
                codes = self._activated(tx, actor, account, factor_id, "webauthn")
        except errors.UniqueViolation:
            raise errors.CredentialExists("this authenticator is already registered") from None
        self._outbox.kick()
        result: dict[str, Any] = {"factor_id": factor_id, "status": "active"}
        if codes:
            result["recovery_codes"] = codes
        return result

    # ------------------------------------------------------------------ passkey-only accounts
    def set_password_login(self, actor: Actor, enabled: bool) -> None:
        """Turn the password path on or off (bearer + step-up ``factor.remove``).

        Off needs an active passkey and unused recovery codes, so the owner keeps a way in that
        a leaked password cannot open; while it is off the last passkey cannot be removed."""
        with self._store.transaction() as tx:
            if actor.enrollment_token_id is not None:
                raise errors.InsufficientScope("an enrollment token cannot change sign-in settings")
            account = self._authorize(tx, actor, "factor.remove")
            if not enabled:
                if not tx.scalar("active_passkey_count", account_id=actor.account_id):
                    raise errors.PasskeyRequired("enroll a passkey before turning password sign-in off")
                if not tx.scalar("unused_recovery_code_count", account_id=actor.account_id):
                    raise errors.PasskeyRequired("make recovery codes before turning password sign-in off")
            tx.run("set_password_login", account_id=actor.account_id, enabled=enabled)
            audit(tx, "user", "account.password_login", actor.account_id, enabled=enabled)
            self._notify(tx, account, "password_login_on" if enabled else "password_login_off")
        self._outbox.kick()

    # ------------------------------------------------------------------ recovery codes, removal
    def regenerate_recovery_codes(self, actor: Actor) -> builtins.list[str]:
        with self._store.transaction() as tx:
            account = self._authorize(tx, actor, "factor.recovery_codes")
            if not tx.scalar("active_factor_count", account_id=actor.account_id):
                raise errors.Conflict("enroll a second factor first")
            codes = self._factors.issue_recovery_codes(tx, actor.account_id)
            audit(tx, "user", "recovery_codes.regenerated", actor.account_id)
            self._notify(tx, account, "recovery_codes_renewed")
        self._outbox.kick()
        return codes

    def remove(self, actor: Actor, factor_id: str) -> None:
        require_uuid(factor_id, errors.NotFound("no such factor"))
        with self._store.transaction() as tx:
            if actor.enrollment_token_id is not None:
                raise errors.InsufficientScope("an enrollment token cannot remove factors")
            account = self._authorize(tx, actor, "factor.remove")
            active = {str(r["id"]): r for r in tx.all("factors_of_account", account_id=actor.account_id)}
            if factor_id not in active:
                raise errors.NotFound("no such factor")
            if len(active) == 1:
                raise errors.LastFactor("add another second factor before removing this one")
            if (not account["password_login"] and active[factor_id]["passkey"]
                    and sum(1 for r in active.values() if r["passkey"]) == 1):
                raise errors.PasskeyRequired("turn password sign-in back on before removing the last passkey")
            tx.one("delete_factor", id=factor_id, account_id=actor.account_id)
            kind = active[factor_id]["type"]
            audit(tx, "user", "factor.removed", actor.account_id, factor_id=factor_id, type=kind)
            self._outbox.event(tx, "factor.removed",
                               {"account_id": actor.account_id, "factor_id": factor_id, "type": kind})
            self._notify(tx, account, "factor_removed", kind)
        self._outbox.kick()
