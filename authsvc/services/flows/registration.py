"""Registration with a verified phone and a verified email.

Rules (docs/api-guide.md, "1. Registration"):
- an email is taken when it normalises to an account's email or has the same confusable
  skeleton (a look-alike, Unicode TS #39);
- the phone must be able to receive our SMS (``SmsPolicy.check_number``: mobile, allowed
  country), else 400 ``unsupported_phone``;
- the answer to ``start``, and what reaches the phone in the request, are the same whether or
  not the email is taken: the SMS code goes to the phone either way (within the SMS caps of
  ``SmsPolicy``); when the email is taken its owner gets a notice at their own address instead
  of an email code (at most one a day) and verification fails;
- a pending registration never claims the email: only accounts do (unique normalised email);
- codes are 6 digits, stored as keyed MACs, live ``code_ttl`` seconds; 5 wrong answers kill the
  registration; the registration is consumed atomically, so it works exactly once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from ... import errors, i18n
from ...policy import SMS, OneTime
from ...security import contexts, crypto
from ...security.passwords import PasswordPolicy
from ...store import Store
from ..core import contacts
from ..core.attempts import failed_attempt
from ..core.devices import KnownDevices
from ..core.ids import require_uuid
from ..core.sessions import RequestInfo
from ..core.sms_policy import SmsPolicy
from ..core.subjects import client_subjects, email_subject
from ..core.throttle import Throttle
from ..platform import messages
from ..platform.audit import audit
from ..platform.hashing import GatedHasher
from ..platform.outbox import Outbox
from .factor_management import issue_enrollment_token


@dataclass(frozen=True)
class Started:
    registration_id: str
    expires_in: int


@dataclass(frozen=True)
class Verified:
    account_id: str
    enrollment_token: str
    expires_in: int
    device_token: str  # the device that completed registration is known (services.core.devices)


class RegistrationService:
    def __init__(
        self,
        *,
        one_time: OneTime,
        default_locale: str,
        store: Store,
        cipher: crypto.Cipher,
        hasher: GatedHasher,
        policy: PasswordPolicy,
        outbox: Outbox,
        sms: SmsPolicy,
        devices: KnownDevices,
        throttle: Throttle,
    ) -> None:
        self._throttle = throttle
        self._sms = sms
        self._devices = devices
        self._one_time = one_time
        self._default_locale = default_locale
        self._store = store
        self._cipher = cipher
        self._hasher = hasher
        self._policy = policy
        self._outbox = outbox

    _purpose = staticmethod(contexts.registration_purpose)

    def _code_mac(self, registration_id: str, channel: str, code: str) -> bytes:
        return self._cipher.mac(self._purpose(registration_id, channel), code)

    def start(self, *, email: str, phone: str, password: str, info: RequestInfo | None = None,
              locale: str | None = None) -> Started:
        """``locale``: the one asked for, else the best match of Accept-Language (the API
        layer's), else ``AUTHSVC_DEFAULT_LOCALE``; the codes go out in it and the account keeps it."""
        locale = locale if i18n.supported(locale) else self._default_locale
        email, email_normalized = contacts.normalize_email(email)
        phone = contacts.normalize_phone(phone)
        password = self._policy.check(password, email=email_normalized)
        self._sms.check_number(phone, field="phone")
        # It hashes, so it stands at the hash gate as a login from an unknown device does: its
        # client, network and email's recent failures decide its place (nothing is counted).
        ip = info.ip if info is not None else ""
        attempt = self._throttle.admit(client_subjects(ip) + [email_subject(email_normalized, email)],
                                       known=False, reserve=False)
        try:
            password_hash = self._hasher.hash(password, standing=attempt.standing)
        except errors.Busy as busy:
            self._throttle.shed(attempt, busy.retry_after)
            raise

        registration_id = str(uuid.uuid4())
        phone_code = crypto.new_numeric_code()
        email_code = crypto.new_numeric_code()
        ttl = self._one_time.registration_ttl
        with self._store.transaction() as tx:
            # Counted whether or not the email is taken, so the limit cannot reveal which it is;
            # under a per-phone lock, so concurrent requests cannot all pass it.
            tx.one("lock_phone", phone=phone)
            if tx.scalar("recent_registration_sms_count", phone=phone) >= SMS.registration_per_phone:
                raise errors.RateLimited(3600, "too many registrations for this phone number")
            owner = tx.one("account_taking_email", email_normalized=email_normalized,
                           email_skeleton=contacts.email_skeleton(email_normalized), except_account=None)
            taken = owner is not None
            # Asked either way, so the work done does not tell a taken email apart.
            notified = tx.scalar("registration_owner_notified_recently", email_normalized=email_normalized)
            notify_owner = bool(taken and not notified)
            tx.one(
                "insert_registration",
                id=registration_id,
                email=email,
                email_normalized=email_normalized,
                phone=phone,
                password_hash=password_hash,
                # A taken email: MACs of unusable codes, so verification can never succeed.
                phone_code_mac=self._code_mac(registration_id, "phone", secrets.token_hex(16) if taken else phone_code),
                email_code_mac=self._code_mac(registration_id, "email", secrets.token_hex(16) if taken else email_code),
                email_taken=taken,
                owner_notified=notify_owner,
                locale=locale,
                ttl=ttl,
            )
            minutes = self._one_time.code_ttl // 60
            # The phone in the request gets the same SMS either way (the requester must not
            # learn from it whether the email is taken); one outbox row either way.
            bundle: list[dict] = []
            if self._sms.permit(tx, to=phone, purpose="registration", ip=info.ip if info else None):
                bundle.append({"kind": "sms", "to": phone,
                               "body": messages.sms(locale, "registration_code", code=phone_code, minutes=minutes)})
            if notify_owner:
                assert owner is not None  # notify_owner implies taken
                subject, body = messages.email(locale, "registration_taken")
                # to the owner's own address (the typed one may only look like it)
                bundle.append({"kind": "email", "to": owner["email"], "subject": subject, "body": body})
            elif not taken:
                subject, body = messages.email(locale, "registration_code", code=email_code, minutes=minutes)
                bundle.append({"kind": "email", "to": email, "subject": subject, "body": body})
            self._outbox.bundle(tx, bundle)
        self._outbox.kick()
        return Started(registration_id, ttl)

    def verify(self, registration_id: str, *, phone_code: str, email_code: str) -> Verified:
        failed = errors.VerificationFailed("the codes do not match a live registration")
        require_uuid(registration_id, failed)
        ttl = self._one_time.enrollment_token_ttl
        try:
            with self._store.transaction() as tx:
                reg = tx.one("lock_live_registration", id=registration_id)
                if reg is None:
                    raise failed
                phone_ok = self._cipher.mac_matches(
                    reg["phone_code_mac"], self._purpose(registration_id, "phone"), phone_code
                )
                email_ok = self._cipher.mac_matches(
                    reg["email_code_mac"], self._purpose(registration_id, "email"), email_code
                )
                if reg["email_taken"] or not (phone_ok and email_ok):
                    failed_attempt(tx, "registration_failed_attempt", registration_id,
                                   max_attempts=self._one_time.max_attempts)
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
                        locale=reg["locale"],
                    )
                    token = issue_enrollment_token(tx, account_id, ttl)
                    device_token, _ = self._devices.issue(tx, account_id, device_name=None)
                    audit(tx, "user", "account.registered", account_id)
                    self._outbox.event(tx, "account.registered", {"account_id": account_id})
                    outcome = Verified(account_id, token, ttl, device_token)
        except errors.UniqueViolation:
            # The email became an account between start and verify.
            raise failed from None
        if outcome is None:
            raise failed
        self._outbox.kick()
        return outcome
