"""Password reset: the SMS code to the registered phone AND a second factor, never less.

Rules (docs/api-guide.md, "6. Password reset"):
- ``start`` answers the same for every email (a decoy reset for unknown ones); the code goes
  only to the account's verified phone: nothing in the request can choose where;
- reset SMS quotas per hour, and within the caps of ``SmsPolicy`` (beyond either the answer
  is the same, and no SMS goes out): requests that carry a live device token of the account
  (``X-Device-Token``) have a quota of their own, 3 per account and phone, which anonymous
  requests cannot use up; anonymous requests share another 3, of which no one client (IPv4
  address, IPv6 /64) gets more than 2, so a stranger on one network cannot use up the quota of
  an owner who lost their known device (a new phone, asking from another network). Both
  quotas together stay within the SMS cap per number (5 an hour), so the anonymous one can
  never use up the known device's; the code lives 10 minutes; 5 wrong answers kill the reset;
- after the SMS code, a second factor (TOTP, WebAuthn or a recovery code) yields a one-time
  reset token; completing revokes every session, notifies phone and email, issues no session;
- starting a reset kills the account's older ones; completing one needs a new password that
  differs from the current one and kills every pending mfa_token, step-up challenge and reset.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from ... import errors
from ...policy import SMS, OneTime
from ...security import contexts, crypto
from ...security.passwords import PasswordPolicy
from ...store import Store, Tx
from ..core import contacts
from ..core.attempts import failed_attempt
from ..core.devices import KnownDevices
from ..core.ids import require_uuid
from ..core.sessions import Sessions
from ..core.sms_policy import SmsPolicy, network_keys
from ..factors.second_factor import SecondFactors
from ..platform import messages
from ..platform.audit import audit
from ..platform.hashing import GatedHasher
from ..platform.outbox import Outbox
from .password_change import check_new_password, end_old_proofs, lock_credentials, refuse_current_password


class PasswordResetService:
    def __init__(
        self,
        *,
        one_time: OneTime,
        store: Store,
        cipher: crypto.Cipher,
        hasher: GatedHasher,
        policy: PasswordPolicy,
        factors: SecondFactors,
        sessions: Sessions,
        outbox: Outbox,
        sms: SmsPolicy,
        devices: KnownDevices,
    ) -> None:
        self._sms = sms
        self._one_time = one_time
        self._store = store
        self._cipher = cipher
        self._hasher = hasher
        self._policy = policy
        self._factors = factors
        self._sessions = sessions
        self._outbox = outbox
        self._devices = devices

    _purpose = staticmethod(contexts.password_reset_purpose)

    def _mac(self, reset_id: str, code: str) -> bytes:
        return self._cipher.mac(self._purpose(reset_id), code)

    def start(self, email: str, *, ip: str | None = None, device_token: str | None = None) -> tuple[str, int]:
        try:
            _, normalized = contacts.normalize_email(email)
        except errors.InvalidRequest:
            normalized = None
        reset_id = str(uuid.uuid4())
        ttl = self._one_time.code_ttl
        code = crypto.new_numeric_code()
        # Known and unknown emails do the same work: a limit query, a reset row, one outbox row
        # (empty for a decoy) and an audit row; only the account's verified phone is ever used.
        with self._store.transaction() as tx:
            account = tx.one("account_by_email", email_normalized=normalized) if normalized else None
            account_id = str(account["id"]) if account else None
            phone = account["phone"] if account else None
            # A known device of the account has a quota of its own, which anonymous requests for
            # the same email cannot use up.
            known = self._devices.known_to(tx, device_token, account_id) is not None
            tx.one("lock_phone", phone=phone or reset_id)  # the per-phone count must not race
            client_key = network_keys(ip)[0]
            sent = tx.one("reset_sms_sent_recently", account_id=account_id, phone=phone, known=known,
                          client_key=client_key)
            assert sent is not None  # aggregates: always one row
            within = sent["per_account"] < SMS.reset_per_account and sent["per_phone"] < SMS.reset_per_account
            if not known:
                within = within and sent["per_client"] < SMS.reset_per_client
            send_to = phone if phone and within else None
            if send_to:
                if not self._sms.permit(tx, to=send_to, purpose="reset", account_id=account_id, ip=ip):
                    send_to = None
            else:
                self._sms.decoy(tx)  # the same locking and counting work either way
            self._sms.requested("reset")  # registered or not: the metric must not tell
            tx.run(
                "insert_password_reset",
                id=reset_id,
                account_id=account_id,
                phone=send_to,
                from_known_device=known,
                client_key=client_key,
                sms_code_mac=self._mac(reset_id, code if send_to else secrets.token_hex(16)),
                ttl=ttl,
            )
            tx.run("kill_older_password_resets", id=reset_id, account_id=account_id)
            self._outbox.bundle(tx, [{
                "kind": "sms", "to": send_to,
                "body": messages.sms(messages.locale_of(account), "reset_code", code=code, minutes=ttl // 60),
            }] if send_to else [])
            audit(tx, "user", "password.reset_requested", account_id, sms_sent=bool(send_to))
        self._outbox.kick()
        return reset_id, ttl

    def _locked(self, tx: Tx, reset_id: str) -> dict:
        row = tx.one("lock_live_password_reset", id=reset_id)
        if row is None or row["account_id"] is None:
            raise errors.VerificationFailed("the reset is unknown, expired or used up")
        return row

    def _fail(self, tx: Tx, row: dict, *, count_for_account: bool) -> None:
        failed_attempt(tx, "password_reset_failed", str(row["id"]), max_attempts=self._one_time.max_attempts)
        if count_for_account:
            account = tx.one("lock_account", account_id=row["account_id"])
            assert account is not None  # the reset's account (a foreign key)
            self._factors.record_failure(tx, account)

    def verify_sms(self, reset_id: str, code: str) -> dict:
        failed = errors.VerificationFailed("the code does not match")
        require_uuid(reset_id, failed)
        with self._store.transaction() as tx:
            row = tx.one("lock_live_password_reset", id=reset_id)
            if row is None:
                raise failed
            ok = (
                row["account_id"] is not None
                and row["phone"] is not None
                and row["sms_verified_at"] is None
                and self._cipher.mac_matches(row["sms_code_mac"], self._purpose(reset_id), code)
            )
            answer: dict[str, Any] | None
            if not ok:
                self._fail(tx, row, count_for_account=False)
                answer = None
            else:
                account_id = str(row["account_id"])
                offer = self._factors.offer(tx, account_id)
                if tx.one("password_reset_sms_verified", id=reset_id, methods=offer.methods,
                          webauthn_challenge=offer.webauthn_challenge) is None:
                    raise failed
                answer = {"methods": offer.methods}
                if offer.webauthn_options is not None:
                    answer["webauthn_options"] = offer.webauthn_options
        if answer is None:
            raise failed
        return answer

    def verify_factor(self, reset_id: str, *, method: str, code: str | None, credential: Any) -> tuple[str, int]:
        failed = errors.VerificationFailed("the second factor was not accepted")
        require_uuid(reset_id, failed)
        token = crypto.new_token()
        with self._store.transaction() as tx:
            row = self._locked(tx, reset_id)
            if row["sms_verified_at"] is None or row["reset_token_hash"] is not None:
                raise failed
            account_id = str(row["account_id"])
            # No login-lock check here: this step is already behind the SMS code to the verified
            # phone, and a lock caused by someone else must not block the owner's reset.
            result = None
            if method in row["methods"]:
                result = self._factors.verify(
                    tx, account_id, method=method, code=code, credential=credential,
                    webauthn_challenge=bytes(row["webauthn_challenge"]) if row["webauthn_challenge"] else None,
                )
            if result is None:
                self._fail(tx, row, count_for_account=True)
                ok = False
            else:
                ok = tx.one("password_reset_factor_verified", id=reset_id,
                            reset_token_hash=crypto.hash_token(token)) is not None
        self._outbox.kick()
        if not ok:
            raise failed
        return token, self._one_time.code_ttl

    def complete(self, reset_id: str, *, reset_token: str, new_password: str) -> None:
        invalid = errors.InvalidToken("the reset token is not valid")
        require_uuid(reset_id, invalid)
        with self._store.transaction() as tx:
            row = tx.one("lock_live_password_reset", id=reset_id)
            account = tx.one("account_by_id", account_id=row["account_id"]) if row and row["account_id"] else None
        if account is None or row is None or row["reset_token_hash"] is None or not crypto.mac_equals(
            bytes(row["reset_token_hash"]), crypto.hash_token(reset_token)
        ):
            raise invalid
        password = check_new_password(self._policy, new_password, email_normalized=account["email_normalized"])
        refuse_current_password(self._hasher, account["password_hash"], password)
        # The reset token proves the SMS code and a second factor: served like a known device.
        password_hash = self._hasher.hash(password, known=True)
        account_id = str(account["id"])
        with self._store.transaction() as tx:
            lock_credentials(tx, account_id)
            if tx.one("complete_password_reset", id=reset_id, reset_token_hash=crypto.hash_token(reset_token)) is None:
                raise invalid
            ended = end_old_proofs(tx, account_id)
            tx.run("set_password", account_id=account_id, password_hash=password_hash)
            tx.run("clear_reset_required", account_id=account_id)
            revoked = self._sessions.revoke_all(tx, account_id, "password_reset")
            devices = self._devices.revoke_all(tx, account_id, "password_reset")
            audit(tx, "user", "password.reset", account_id, sessions=revoked, devices=devices, ended=ended)
            self._outbox.event(tx, "password.reset", {"account_id": account_id})
            locale = messages.locale_of(account)
            self._outbox.sms(tx, account["phone"], messages.sms(locale, "password_reset"))
            self._outbox.email(tx, account["email"], *messages.email(locale, "password_reset"))
        self._outbox.kick()
