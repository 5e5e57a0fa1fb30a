"""Registration with a verified phone and a verified email.

Rules (API contract, "Registration"):
- an email is taken when it normalises to an account's email or has the same confusable
  skeleton (a look-alike, Unicode TS #39);
- the answer to ``start`` is the same whether or not the email is taken; when it is taken
  nothing goes to the new phone, the owner of the email gets a notice, and verification fails;
- a pending registration never claims the email: only accounts do (unique normalised email);
- codes are 6 digits, stored as keyed MACs, live ``code_ttl`` seconds; 5 wrong answers kill the
  registration; the registration is consumed atomically, so it works exactly once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..config import Settings
from ..security import crypto
from ..security.passwords import PasswordPolicy
from .hashing import GatedHasher
from . import contacts
from .audit import audit
from .factors import issue_enrollment_token
from .ids import require_uuid
from .outbox import Outbox

MAX_ATTEMPTS = 5
MAX_SMS_PER_PHONE_PER_HOUR = 5


@dataclass(frozen=True)
class Started:
    registration_id: str
    expires_in: int


@dataclass(frozen=True)
class Verified:
    account_id: str
    enrollment_token: str
    expires_in: int


class RegistrationService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Any,
        cipher: crypto.Cipher,
        hasher: GatedHasher,
        policy: PasswordPolicy,
        outbox: Outbox,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cipher = cipher
        self._hasher = hasher
        self._policy = policy
        self._outbox = outbox

    def _code_mac(self, registration_id: str, channel: str, code: str) -> bytes:
        return self._cipher.mac(f"registration:{registration_id}:{channel}", code)

    def start(self, *, email: str, phone: str, password: str) -> Started:
        email, email_normalized = contacts.normalize_email(email)
        phone = contacts.normalize_phone(phone)
        password = self._policy.check(password, email=email_normalized)
        password_hash = self._hasher.hash(password)

        registration_id = str(uuid.uuid4())
        phone_code = crypto.new_numeric_code()
        email_code = crypto.new_numeric_code()
        ttl = self._settings.registration_ttl
        with self._store.transaction() as tx:
            # Counted whether or not the email is taken, so the limit cannot reveal which it is;
            # under a per-phone lock, so concurrent requests cannot all pass it.
            tx.one("lock_phone", phone=phone)
            if tx.scalar("recent_registration_sms_count", phone=phone) >= MAX_SMS_PER_PHONE_PER_HOUR:
                raise errors.RateLimited(3600, "too many registrations for this phone number")
            owner = tx.one("account_taking_email", email_normalized=email_normalized,
                           email_skeleton=contacts.email_skeleton(email_normalized), except_account=None)
            taken = owner is not None
            if taken:
                # Unusable codes: verification of this registration can never succeed.
                phone_code, email_code = secrets.token_hex(16), secrets.token_hex(16)
            tx.one(
                "insert_registration",
                id=registration_id,
                email=email,
                email_normalized=email_normalized,
                phone=phone,
                password_hash=password_hash,
                phone_code_mac=self._code_mac(registration_id, "phone", phone_code),
                email_code_mac=self._code_mac(registration_id, "email", email_code),
                email_taken=taken,
                ttl=ttl,
            )
            minutes = self._settings.code_ttl // 60
            # One outbox row either way: the work done must not tell a taken email apart.
            if taken:
                messages = [{  # to the owner's own address (the typed one may only look like it)
                    "kind": "email", "to": owner["email"], "subject": "Someone tried to register with your email",
                    "body": "Someone tried to create a new account with this email address, which "
                            "already has an account.\n\nIf it was you, log in instead, or reset your "
                            "password. If it was not you, you need not do anything: no account was made.",
                }]
            else:
                messages = [
                    {"kind": "sms", "to": phone,
                     "body": f"Your verification code is {phone_code}. It expires in {minutes} minutes."},
                    {"kind": "email", "to": email, "subject": "Verify your email",
                     "body": f"Your email verification code is {email_code}.\n\nIt expires in {minutes} "
                             "minutes. If you did not ask for it, ignore this message."},
                ]
            self._outbox.bundle(tx, messages)
        self._outbox.kick()
        return Started(registration_id, ttl)

    def verify(self, registration_id: str, *, phone_code: str, email_code: str) -> Verified:
        failed = errors.VerificationFailed("the codes do not match a live registration")
        require_uuid(registration_id, failed)
        ttl = self._settings.enrollment_token_ttl
        try:
            with self._store.transaction() as tx:
                reg = tx.one("lock_live_registration", id=registration_id)
                if reg is None:
                    raise failed
                phone_ok = crypto.mac_equals(
                    reg["phone_code_mac"], self._code_mac(registration_id, "phone", phone_code)
                )
                email_ok = crypto.mac_equals(
                    reg["email_code_mac"], self._code_mac(registration_id, "email", email_code)
                )
                if reg["email_taken"] or not (phone_ok and email_ok):
                    tx.one("registration_failed_attempt", id=registration_id, max_attempts=MAX_ATTEMPTS)
                    # committed below: the failed attempt must count
                    outcome: Verified | None = None
                else:
                    if tx.one("consume_registration", id=registration_id) is None:
                        raise failed
                    account_id = str(uuid.uuid4())
                    tx.one(
                        "insert_account",
                        id=account_id,
                        email=reg["email"],
                        email_normalized=reg["email_normalized"],
                        email_skeleton=contacts.email_skeleton(reg["email_normalized"]),
                        phone=reg["phone"],
                        password_hash=reg["password_hash"],
                        webauthn_user_id=secrets.token_bytes(32),
                    )
                    token = issue_enrollment_token(tx, account_id, ttl)
                    audit(tx, "user", "account.registered", account_id)
                    self._outbox.event(tx, "account.registered", {"account_id": account_id})
                    outcome = Verified(account_id, token, ttl)
        except errors.UniqueViolation:
            # The email became an account between start and verify.
            raise failed from None
        if outcome is None:
            raise failed
        self._outbox.kick()
        return outcome
