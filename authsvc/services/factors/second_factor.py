"""Checking a second-factor answer, and the account-wide throttle on wrong answers.

The throttle: after 10 wrong answers from unknown devices in 15 minutes, logins of the account
from unknown devices wait with growing delays (1 minute doubling, capped at 1 hour; never
permanent) and the owner is notified; known devices are not locked, and a successful login
resets the escalation. The password-reset factor step is not blocked by this lock (it is
already behind the SMS code to the verified phone).

Wrong answers from known devices never lock the account, but they are bounded where they come
from (``known_device_wait``): a login's second factor from a known device waits once 10 wrong
answers *of that device token* fall in 15 minutes, and step-up from a session opened on a known
device (which ignores the account lock) waits once 10 wrong answers *of that session* do. So a
stolen device token (or session) cannot guess codes without bound, unknown devices cannot use
that budget up, and a stolen session's wrong answers never pause the owner's other sessions and
devices. When such a wait starts the owner is told (``record_failure`` returns True; the caller
sends the notice, see ``reports.factor_guessing``).

Shared by login, step-up and password reset: one place decides what a TOTP
code, a WebAuthn assertion or a recovery code proves, and every acceptance is an atomic
conditional UPDATE, so a code, a step or an assertion counter is accepted at most once
even under concurrent requests.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ... import errors
from ...policy import FACTOR_LOCK, ONE_TIME
from ...security import contexts, totp, webauthn_payment
from ...security.crypto import Cipher
from ...security.webauthn import Assertion, WebAuthn, decoy_public_key, handles_equal
from ...store import Tx
from ..core.sessions import FactorResult
from ..platform import messages
from ..platform.audit import audit
from ..platform.outbox import Outbox

_log = logging.getLogger("authsvc.services.second_factor")

_RC_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RC_LENGTH = 16  # 16 symbols of 31: ~79 bits
_RC_RE = re.compile(rf"[{_RC_ALPHABET}]{{{_RC_LENGTH}}}")  # fullmatch: "$" would allow a final "\n"



def webauthn_assurance(factor: dict, assertion: Assertion) -> tuple[str, str]:
    """(``acr``, the key's RFC 8176 ``amr`` value) a WebAuthn assertion earns as a second
    factor, per NIST SP 800-63B rev. 4: a syncable credential (backup-eligible or backed up,
    by the flags stored at registration or seen in any assertion, this one included) is AAL2
    and a software-secured key (``swk``: its private key can leave the device); only a
    device-bound credential that verified its user here reaches AAL3 (``hwk``)."""
    synced = assertion.synced or bool(factor.get("backup_eligible")) or bool(factor.get("backed_up"))
    if synced:
        return "aal2", "swk"
    return ("aal3" if assertion.user_verified else "aal2"), "hwk"


@dataclass(frozen=True)
class Offer:
    methods: list[str]
    webauthn_options: dict | None
    webauthn_challenge: bytes | None


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(ONE_TIME.recovery_codes):
        raw = "".join(secrets.choice(_RC_ALPHABET) for _ in range(_RC_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RC_LENGTH, 4)))
    return codes


def normalize_recovery_code(code: str) -> str | None:
    cleaned = code.replace("-", "").replace(" ", "").lower()
    return cleaned if _RC_RE.fullmatch(cleaned) else None


def recovery_code_hash(normalized: str) -> bytes:
    return hashlib.sha256(contexts.RECOVERY_CODE_LABEL + normalized.encode()).digest()


class SecondFactors:
    def __init__(self, *, cipher: Cipher, webauthn: WebAuthn, outbox: Outbox) -> None:
        self._cipher = cipher
        self.webauthn = webauthn
        self._outbox = outbox
        self._decoy_key = decoy_public_key()

    # ------------------------------------------------------------------ what the account has
    def offer(self, tx: Tx, account_id: str, challenge: bytes | None = None) -> Offer:
        """The methods the account can answer with, and WebAuthn request options when it has a
        key (with ``challenge`` as given, e.g. derived from a payment; else a random one)."""
        row = tx.one("factor_offer", account_id=account_id)  # one round trip for all three
        assert row is not None  # aggregates: always one row
        credential_ids = [bytes(c) for c in row["webauthn_credential_ids"]]
        methods = ["webauthn"] if credential_ids else []
        if row["has_totp"]:
            methods.append("totp")
        if methods and row["has_recovery_codes"]:
            methods.append("recovery_code")
        if not credential_ids:
            return Offer(methods, None, None)
        options, used = self.webauthn.authentication_options(allow_credential_ids=credential_ids, challenge=challenge)
        return Offer(methods, options, used)

    def issue_recovery_codes(self, tx: Tx, account_id: str) -> list[str]:
        """A new set of codes; the old set dies in the same transaction."""
        tx.run("delete_recovery_codes", account_id=account_id)
        codes = new_recovery_codes()
        for code in codes:
            normalized = normalize_recovery_code(code)
            assert normalized is not None  # new codes are well formed
            tx.run("insert_recovery_code", account_id=account_id, code_hash=recovery_code_hash(normalized))
        return codes

    # ------------------------------------------------------------------ checking an answer
    def verify(
        self,
        tx: Tx,
        account_id: str,
        *,
        method: str,
        code: str | None,
        credential: Any,
        webauthn_challenge: bytes | None,
        payment: dict | None = None,
    ) -> FactorResult | None:
        """The proof an answer gives, or None for a wrong answer (the caller counts it).
        ``spc`` (Secure Payment Confirmation) needs ``payment``, what the assertion must show."""
        if method == "totp":
            return self._totp(tx, account_id, code)
        if method == "recovery_code":
            return self._recovery(tx, account_id, code)
        if method == "webauthn":
            return self._webauthn(tx, account_id, credential, webauthn_challenge)
        if method == "spc":
            return self._spc(tx, account_id, credential, webauthn_challenge, payment)
        return None

    def payment_credential_ids(self, tx: Tx, account_id: str) -> list[bytes]:
        return [bytes(r["credential_id"]) for r in tx.all("payment_credential_ids", account_id=account_id)]

    def _spc(self, tx: Tx, account_id: str, credential: Any, challenge: bytes | None,
             payment: dict | None) -> FactorResult | None:
        """A ``payment.get`` assertion of one of the account's payment credentials, showing
        exactly ``payment``; the counter is accepted once (as for WebAuthn)."""
        if credential is None or challenge is None or payment is None:
            return None
        try:
            credential_id = self.webauthn.credential_id(credential)
        except errors.InvalidFactor:
            return None
        factor = tx.one("payment_factor_by_credential", account_id=account_id, credential_id=credential_id)
        if factor is None:  # not a payment credential of this account
            return None
        try:
            handle = self.webauthn.user_handle(credential)
        except errors.InvalidFactor:
            return None
        if handle is not None and not handles_equal(handle, bytes(factor["webauthn_user_id"])):
            return None
        return self._assertion_result(
            tx, account_id, factor, "spc", lambda: webauthn_payment.verify_payment_authentication(
                self.webauthn, credential=credential, expected_challenge=challenge, expected_payment=payment,
                public_key=bytes(factor["public_key"]), current_sign_count=factor["sign_count"],
            ))

    def _totp(self, tx: Tx, account_id: str, code: str | None) -> FactorResult | None:
        if not totp.is_well_formed(code):
            return None
        for factor in tx.all("active_totp_factors", account_id=account_id):
            factor_id = str(factor["id"])
            secret = self._cipher.decrypt(factor["totp_secret_enc"], aad=contexts.totp_secret_aad(factor_id)).decode()
            step = totp.verify(secret, code, last_step=factor["totp_last_step"])
            if step is not None and tx.one("totp_accept_step", id=factor_id, step=step):
                return FactorResult("totp", ("pwd", "otp", "mfa"), "aal2", factor_id)
        return None

    def _recovery(self, tx: Tx, account_id: str, code: str | None) -> FactorResult | None:
        normalized = normalize_recovery_code(code) if isinstance(code, str) else None
        if normalized is None:
            return None
        if tx.one("burn_recovery_code", account_id=account_id, code_hash=recovery_code_hash(normalized)):
            audit(tx, "user", "recovery_code.used", account_id)
            return FactorResult("recovery_code", ("pwd", "otp", "mfa"), "aal2", None)
        return None

    def _webauthn(self, tx: Tx, account_id: str, credential: Any, challenge: bytes | None) -> FactorResult | None:
        if credential is None or challenge is None:
            return None
        try:
            credential_id = self.webauthn.credential_id(credential)
        except errors.InvalidFactor:
            return None
        factor = tx.one("webauthn_factor_by_credential", account_id=account_id, credential_id=credential_id)
        if factor is None:  # not a credential of this account
            return None
        # W3C WebAuthn 7.2 step 6: a userHandle, when present, names the credential's owner.
        try:
            handle = self.webauthn.user_handle(credential)
        except errors.InvalidFactor:
            return None
        if handle is not None and not handles_equal(handle, bytes(factor["webauthn_user_id"])):
            return None
        return self._assertion_result(tx, account_id, factor, "webauthn", lambda: self.webauthn.verify_authentication(
            credential=credential,
            expected_challenge=challenge,
            public_key=bytes(factor["public_key"]),
            current_sign_count=factor["sign_count"],
        ))

    def _assertion_result(
        self, tx: Tx, account_id: str, factor: dict, method: str, verify: Callable[[], Assertion]
    ) -> FactorResult | None:
        """A WebAuthn or SPC assertion's outcome: a counter regression is recorded and audited, a
        valid assertion is accepted once (a concurrent use of the same one loses)."""
        try:
            assertion = verify()
        except errors.SignCountRegression:
            tx.run("webauthn_counter_regression", id=factor["id"])
            audit(tx, "system", "webauthn.counter_regression", account_id, factor_id=str(factor["id"]))
            _log.warning("webauthn counter regression on factor %s", factor["id"])
            return None
        except errors.InvalidFactor:
            return None
        if not self._accept(tx, factor, assertion):
            return None  # a concurrent use of the same assertion won
        acr, key = webauthn_assurance(factor, assertion)
        return FactorResult(method, ("pwd", key, "mfa"), acr, str(factor["id"]))

    @staticmethod
    def _accept(tx: Tx, factor: dict, assertion: Assertion) -> bool:
        return tx.one("webauthn_accept_count", id=factor["id"], old_count=factor["sign_count"],
                      new_count=assertion.sign_count, backup_eligible=assertion.backup_eligible,
                      backed_up=assertion.backed_up) is not None

    def verify_passkey(self, tx: Tx, credential: Any, challenge: bytes) -> tuple[str, FactorResult] | None:
        """(account id, proof) for a valid passkey assertion, else None.

        The account comes from the credential id, and the assertion's ``userHandle`` must be
        that account's WebAuthn user handle. An unknown credential, a missing or foreign
        handle and a bad signature all cost one signature check (against a decoy key where
        nothing matched) and all return None, so none of them can be told apart."""
        try:
            credential_id = self.webauthn.credential_id(credential)
            handle = self.webauthn.user_handle(credential)
        except errors.InvalidFactor:
            return None
        found = tx.one("passkey_by_credential", credential_id=credential_id)
        # only read where ``matched`` (so found); the same work either way for the timing
        factor = cast(dict[str, Any], found)
        matched = (
            found is not None and handle is not None
            and handles_equal(handle, bytes(factor["webauthn_user_id"]))
        )
        try:
            assertion = self.webauthn.verify_authentication(
                credential=credential,
                expected_challenge=challenge,
                public_key=bytes(factor["public_key"]) if matched else self._decoy_key,
                current_sign_count=factor["sign_count"] if matched else 0,
            )
        except errors.SignCountRegression:
            if matched:
                tx.run("webauthn_counter_regression", id=factor["id"])
                audit(tx, "system", "webauthn.counter_regression", str(factor["account_id"]),
                      factor_id=str(factor["id"]))
                _log.warning("webauthn counter regression on factor %s", factor["id"])
            return None
        except errors.InvalidFactor:
            return None
        if not matched:  # cannot happen (the decoy key has no private half); fail closed
            return None
        if not self._accept(tx, factor, assertion):
            return None  # a concurrent use of the same assertion won
        # User verification is required, so the passkey alone is two factors (RFC 8176 "user");
        # a passkey sign-in is AAL2 whatever the key (docs/api-guide.md, `POST /v1/login/passkey`),
        # and its amr still says whether the key is device-bound (hwk) or syncable (swk).
        _, key = webauthn_assurance(factor, assertion)
        return str(factor["account_id"]), FactorResult("webauthn", (key, "user", "mfa"), "aal2", str(factor["id"]))

    # ------------------------------------------------------------------ throttle
    def lock_remaining(self, tx: Tx, account_id: str) -> int:
        """Seconds the account's lock still holds for unknown devices (it is caused only by
        wrong answers from unknown devices)."""
        return tx.scalar("account_lock_remaining", account_id=account_id) or 0

    def known_device_wait(self, tx: Tx, *, device_token_id: str | None = None, session_id: str | None = None) -> int:
        """Seconds until fewer than ``FACTOR_LOCK.failures`` wrong answers of this session
        (step-up; ``session_id``) or of this known device's logins (``device_token_id``) are left
        in the last ``FACTOR_LOCK.window``: the bound on checks that ignore the account lock."""
        if session_id is not None:
            return tx.scalar("session_failure_wait", session_id=session_id, window=FACTOR_LOCK.window,
                             offset=FACTOR_LOCK.failures - 1) or 0
        if device_token_id is not None:
            return tx.scalar("device_failure_wait", device_token_id=device_token_id, window=FACTOR_LOCK.window,
                             offset=FACTOR_LOCK.failures - 1) or 0
        return 0

    def clear_escalation(self, tx: Tx, account: dict) -> None:
        """After a successful login the next lock starts again at the shortest delay.
        ``account`` is the row locked in this transaction (nothing to write when its
        ``lock_count`` is already 0, the usual case)."""
        if account.get("lock_count", 1):
            tx.run("clear_lock_escalation", account_id=str(account["id"]))

    def record_failure(
        self, tx: Tx, account: dict, *, from_known_device: bool = False,
        device_token_id: str | None = None, session_id: str | None = None,
    ) -> bool:
        """Count a wrong answer for the account. Past the limit, answers from unknown devices lock
        the account for unknown devices (growing, capped delays); a known device's wrong answers
        never lock its owner out, but count for its device token (login) or its session
        (step-up). Returns True when this answer starts a known device's wait (the caller
        tells the owner)."""
        account_id = str(account["id"])
        tx.run("record_factor_failure", account_id=account_id, from_known_device=from_known_device,
               device_token_id=device_token_id if from_known_device else None,
               session_id=session_id if from_known_device else None)
        if from_known_device:
            if session_id is not None:
                n = tx.scalar("session_failures_in_window", session_id=session_id, window=FACTOR_LOCK.window)
            elif device_token_id is not None:
                n = tx.scalar("device_failures_in_window", device_token_id=device_token_id, window=FACTOR_LOCK.window)
            else:
                return False
            if n != FACTOR_LOCK.failures:
                return False
            audit(tx, "system", "login.known_device_paused", account_id,
                  scope="session" if session_id is not None else "device", failures=n)
            return True
        failures = tx.scalar("recent_factor_failures", account_id=account_id, window=FACTOR_LOCK.window)
        if failures < FACTOR_LOCK.failures:
            return False
        lock = FACTOR_LOCK
        seconds = min(lock.max_lock, lock.first_lock * 2 ** min(account["lock_count"], lock.max_doublings))
        tx.one("lock_account_until", account_id=account_id, seconds=seconds)
        minutes = max(1, seconds // 60)
        audit(tx, "system", "login.locked", account_id, seconds=seconds, failures=failures)
        self._outbox.event(tx, "login.locked", {"account_id": account_id, "seconds": seconds})
        locale = messages.locale_of(account)
        self._outbox.email(tx, account["email"],
                           *messages.email(locale, "login_locked", failures=failures, minutes=minutes))
        self._outbox.sms(tx, account["phone"], messages.sms(locale, "login_locked", minutes=minutes))
        return False
