"""Login: a password step that yields only an mfa_token, then a mandatory second factor.

Rules (docs/api-guide.md, "3. Login: password, then a second factor"; README, "Password +
second factor, or a passkey"):
- an unknown email, a wrong password, a frozen or unverified account all answer 401
  ``invalid_credentials`` after the same argon2 work (unknown emails verify a dummy hash);
- a password longer than the policy allows is a 400 before any hashing;
- whether the request comes from a known device of the account (a live ``X-Device-Token``, see
  ``devices``) is decided before any password hashing, the same way for unknown emails; so are
  the failure budgets (``throttle``): an unknown device is charged to its client, network and
  the typed email, a known device only to its own token; past a budget, 429 before hashing,
  the same answer for registered and unknown emails; an email's first wait of an episode
  notifies a real owner (once per episode);
- the mfa_token is good for one correct answer and dies after 5 wrong ones; wrong answers from
  unknown devices also count for the account (see ``second_factor``), which then locks unknown
  devices only, with growing delays; the owner's known devices are never locked out, and a
  successful login clears the escalation; a known device's own wrong answers are bounded per
  device token (10 in 15 minutes, then it waits, and the owner is told once the wait starts);
  the token is bound to the password hash it was issued for, so a password change or reset ends it;
- a successful login answers with a device token: the known device's own (its life extended),
  or a new one, and then the owner is notified of the new device;
- a frozen account learns so only after both factors; so does an account an operator unfroze,
  which must take the password reset path (403 ``password_reset_required``: the SMS code to
  the verified phone and a factor), never a ``password_change_token`` that the password and a
  factor alone would earn;
- an account without an active factor gets an SMS code to its verified phone (only after the
  password verified, and within the caps of ``SmsPolicy``: past one the answer is the same and
  no SMS goes out), and a correct code yields an enrollment token, never a session;
- an account that turned password sign-in off (it has a passkey) is answered as for a wrong
  password, after the same work;
- every way in (second factor here, passkey in ``passkey``) ends in ``finish``, so the rules
  after a valid proof (lock, frozen, forced password change, session, new device) are one code.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from ... import errors
from ...metrics import Metrics
from ...policy import FACTOR_LOCK, OneTime
from ...security import contexts, crypto, passwords
from ...store import Store, Tx
from ..core import contacts
from ..core.attempts import failed_attempt
from ..core.devices import KnownDevices
from ..core.sessions import FactorResult, RequestInfo, Sessions, TokenPair, device_name
from ..core.sms_policy import SmsPolicy
from ..core.subjects import Blocked, Subject, client_subjects, device_subject, email_subject
from ..core.throttle import Throttle
from ..factors.second_factor import SecondFactors
from ..platform import messages
from ..platform.audit import audit
from ..platform.hashing import GatedHasher
from ..platform.outbox import Outbox
from .factor_management import issue_enrollment_token
from .password_change import PasswordChangeService
from .reports import ReportService


@dataclass(frozen=True)
class MfaChallenge:
    mfa_token: str
    expires_in: int
    methods: list[str]
    webauthn_options: dict | None


@dataclass(frozen=True)
class EnrollmentGrant:
    enrollment_token: str
    expires_in: int


# What a way in answers once its transaction committed (``deliver`` raises the error).
_Answer = TypeVar("_Answer", bound=TokenPair | EnrollmentGrant)


class LoginService:
    def __init__(
        self,
        *,
        one_time: OneTime,
        store: Store,
        cipher: crypto.Cipher,
        hasher: GatedHasher,
        factors: SecondFactors,
        sessions: Sessions,
        reports: ReportService,
        password_change: PasswordChangeService,
        outbox: Outbox,
        metrics: Metrics,
        sms: SmsPolicy,
        devices: KnownDevices,
        throttle: Throttle,
    ) -> None:
        self._sms = sms
        self._one_time = one_time
        self._store = store
        self._cipher = cipher
        self._hasher = hasher
        self._factors = factors
        self._sessions = sessions
        self._reports = reports
        self._password_change = password_change
        self._outbox = outbox
        self._metrics = metrics
        self._devices = devices
        self._throttle = throttle

    # ------------------------------------------------------------------ step 1
    def password(self, *, email: str, password: str, info: RequestInfo, login_pass: str | None = None) -> MfaChallenge:
        invalid = errors.InvalidCredentials("email or password is wrong")
        if passwords.too_long(password):  # no account can have it: a fast 400, no hashing
            raise errors.InvalidRequest(
                "the password is too long",
                errors=[{"field": "password", "message": f"at most {passwords.MAX_LENGTH} characters"}],
            )
        try:
            _, email_normalized = contacts.normalize_email(email)
        except errors.InvalidRequest:
            email_normalized = None
        def lookup() -> tuple[dict | None, str | None, str | None]:
            with self._store.transaction(crowd=True) as tx:  # before the gate: any number may come at once
                account = tx.one("account_by_email", email_normalized=email_normalized) if email_normalized else None
                # Before any hashing; one lookup by the token whether or not the email is registered.
                device_token_id = self._devices.known_to(tx, info.device_token, account["id"] if account else None)
                return account, device_token_id, self._live_pass(tx, login_pass, account)

        if info.device_token or login_pass:  # what it is charged to depends on the token or pass
            account, device_token_id, pass_id = lookup()
            subjects = self.subjects(info, email_normalized, email, device_token_id, email_budget=pass_id is None)
            attempt = self._throttle.admit(subjects, known=device_token_id is not None)
        else:
            # Charged to its client, network and email whatever the account: admission first, so
            # a refused attempt costs no database work (the same for registered and unknown emails).
            attempt = self._throttle.admit(self.subjects(info, email_normalized, email, None), known=False)
            try:
                account, device_token_id, pass_id = lookup()
            except BaseException:
                self._throttle.passed(attempt)
                raise
        known = device_token_id is not None
        try:
            if account is None:
                self._hasher.dummy_verify(password, standing=attempt.standing)
                ok = False
            else:
                ok = self._hasher.verify(account["password_hash"], password, standing=attempt.standing) \
                    and account["password_login"]
        except errors.Busy as busy:
            self._throttle.shed(attempt, busy.retry_after)
            raise
        except BaseException:
            self._throttle.passed(attempt)
            raise
        if not ok:
            self._metrics.logins.labels("password", "invalid_credentials").inc()
            blocked = self._throttle.failed(attempt)
            if pass_id is not None:
                with self._store.transaction() as tx:
                    failed_attempt(tx, "login_pass_failed", pass_id,
                                   max_attempts=self._one_time.login_pass_max_attempts)
            self._episode_notice(blocked, account)
            raise invalid
        self._throttle.passed(attempt)
        assert account is not None  # ok needs a registered account
        account_id = str(account["id"])
        token = crypto.new_token()
        sms_code = None
        rehashed = (
            self._hasher.hash(password, standing=attempt.standing)
            if self._hasher.needs_rehash(account["password_hash"]) else None
        )
        with self._store.transaction() as tx:
            if pass_id is not None and tx.one("consume_login_pass", id=pass_id) is None:
                # spent by a sign-in at the same moment: the email's budget holds again
                raise errors.RateLimited(2, "too many failed sign-ins; try again later")
            current_hash = account["password_hash"]
            if rehashed and tx.run("update_password_hash", account_id=account_id, password_hash=rehashed,
                                   old_hash=current_hash):
                current_hash = rehashed
            remaining = 0 if known else self._factors.lock_remaining(tx, account_id)
            if remaining:
                self._metrics.logins.labels("password", "locked").inc()
                self._metrics.throttle.labels("throttled", "factor_lock", attempt.standing.name).inc()
                raise errors.RateLimited(remaining, "sign-in for this account is paused; try again later")
            offer = self._factors.offer(tx, account_id)
            methods, options, challenge = offer.methods, offer.webauthn_options, offer.webauthn_challenge
            if not methods:
                methods = ["sms"]
                sms_code = crypto.new_numeric_code()
            token_id = str(uuid.uuid4())
            tx.run(
                "insert_mfa_token",
                id=token_id,
                token_hash=crypto.hash_token(token),
                account_id=account_id,
                methods=methods,
                webauthn_challenge=challenge,
                sms_code_mac=self._sms_mac(token_id, sms_code) if sms_code else None,
                ip=info.ip,
                user_agent=info.user_agent,
                device_id=info.device_id,
                password_fp=passwords.hash_fingerprint(current_hash),
                ttl=self._one_time.mfa_token_ttl,
            )
            if sms_code and not self._sms.send(
                tx, to=account["phone"], purpose="login", account_id=account_id, ip=info.ip,
                body=messages.sms(messages.locale_of(account), "login_code",
                                  code=sms_code, minutes=self._one_time.mfa_token_ttl // 60),
            ):
                sms_code = None  # past a cap: the same answer, nothing sent
        if sms_code:
            self._outbox.kick()
        self._metrics.logins.labels("password", "ok").inc()
        return MfaChallenge(token, self._one_time.mfa_token_ttl, methods, options)

    @staticmethod
    def subjects(info: RequestInfo, email_normalized: str | None, typed_email: str,
                 device_token_id: str | None, *, email_budget: bool = True) -> list[Subject]:
        """What a password attempt is charged to: a known device's own token, or else the
        client, its network and (unless the request carries the owner's sign-in pass) the
        email as typed."""
        if device_token_id is not None:
            return [device_subject(device_token_id)]
        subjects = client_subjects(info.ip)
        return subjects + [email_subject(email_normalized, typed_email)] if email_budget else subjects

    def _live_pass(self, tx: Tx, login_pass: str | None, account: dict | None) -> str | None:
        """The id of the owner's live sign-in pass when the request carries it (one lookup
        whenever a pass is given, registered email or not)."""
        if not login_pass:
            return None
        row = tx.one("live_login_pass", token_hash=crypto.hash_token(login_pass.strip()),
                     account_id=account["id"] if account is not None else None)
        return str(row["id"]) if row is not None else None

    def _episode_notice(self, blocked: list[Blocked], account: dict | None) -> None:
        """The first wait of an email's episode notifies a real owner, by email, with a sign-in
        pass: with it, the owner's next sign-in from a new device skips the email's budget (it
        still needs the password and the second factor, and counts for its client and network).
        The pass goes only to the verified email, only in this notice (at most one per episode),
        so it opens no new path for enumeration or for sending messages. An unknown email does
        the same work with an empty outbox row, so timing tells nothing."""
        if not any(b.subject.scope == "email" and b.new_episode for b in blocked):
            return
        with self._store.transaction() as tx:
            messages_: list[dict[str, Any]] = []
            if account is not None:
                login_pass = crypto.new_token(15)
                tx.run("insert_login_pass", id=str(uuid.uuid4()), account_id=account["id"],
                       token_hash=crypto.hash_token(login_pass), ttl=self._one_time.login_pass_ttl)
                subject, body = messages.email(messages.locale_of(account), "login_paused_new_devices",
                                               login_pass=login_pass, hours=self._one_time.login_pass_ttl // 3600)
                messages_.append({"kind": "email", "to": account["email"], "subject": subject, "body": body})
            self._outbox.bundle(tx, messages_)
            if account is not None:
                audit(tx, "system", "login.throttled", str(account["id"]), scope="email")
        self._outbox.kick()

    def _locked(self, tx: Tx, account_id: str, known_token_id: str | None) -> int:
        """Seconds the account's second-factor lock still holds for this device (known devices,
        those presenting a live token of the account: never locked)."""
        if known_token_id is not None:
            return 0
        remaining = self._factors.lock_remaining(tx, account_id)
        if remaining:
            self._metrics.throttle.labels("throttled", "factor_lock", "stranger").inc()
        return remaining

    _sms_purpose = staticmethod(contexts.login_sms_purpose)

    def _sms_mac(self, token_id: str, code: str) -> bytes:
        return self._cipher.mac(self._sms_purpose(token_id), code)

    # ------------------------------------------------------------------ step 2
    def second_factor(
        self, *, mfa_token: str, method: str, code: str | None, credential: Any, info: RequestInfo
    ) -> TokenPair | EnrollmentGrant:
        rejected = errors.InvalidFactor("the second factor was not accepted")
        with self._store.transaction() as tx:
            row = tx.one("lock_live_mfa_token", token_hash=crypto.hash_token(mfa_token))
            if row is None:
                raise rejected
            account_id = str(row["account_id"])
            account = tx.one("lock_account", account_id=account_id)
            assert account is not None  # the token's account (a foreign key)
            if row["password_fp"] is None or not crypto.mac_equals(
                bytes(row["password_fp"]), passwords.hash_fingerprint(account["password_hash"])
            ):
                raise rejected  # issued for a password that has changed since
            known_token_id = self._devices.known_to(tx, info.device_token, account_id)
            remaining = self._locked(tx, account_id, known_token_id)
            if not remaining and known_token_id is not None:
                # a known device is never locked, but its own wrong answers are bounded
                remaining = self._factors.known_device_wait(tx, device_token_id=known_token_id)
                if remaining:
                    self._metrics.throttle.labels("throttled", "device", "known").inc()
            if remaining:
                raise errors.RateLimited(remaining, "sign-in for this account is paused; try again later")
            result = None
            enrollment = False
            if method in row["methods"]:
                if method == "sms":
                    enrollment = isinstance(code, str) and self._cipher.mac_matches(
                        row["sms_code_mac"], self._sms_purpose(str(row["id"])), code
                    )
                else:
                    result = self._factors.verify(
                        tx, account_id, method=method, code=code, credential=credential,
                        webauthn_challenge=bytes(row["webauthn_challenge"]) if row["webauthn_challenge"] else None,
                    )
            if result is None and not enrollment:
                failed_attempt(tx, "mfa_token_failed", str(row["id"]), max_attempts=self._one_time.max_attempts)
                if self._factors.record_failure(tx, account, from_known_device=known_token_id is not None,
                                                device_token_id=known_token_id):
                    self._reports.factor_guessing(tx, account, info, failures=FACTOR_LOCK.failures)
                outcome: TokenPair | EnrollmentGrant | errors.AuthsvcError = rejected
            else:
                if tx.one("consume_mfa_token", id=row["id"]) is None:
                    raise rejected
                if enrollment and account["status"] != "frozen":
                    if tx.scalar("active_factor_count", account_id=account_id):
                        raise rejected  # a factor was enrolled meanwhile: the SMS path is closed
                    outcome = self._enrollment_grant(tx, account_id)
                else:
                    outcome = self._complete(tx, account, result, info, known_token_id)
        return self.deliver(outcome)

    # ------------------------------------------------------------------ after a valid proof
    def finish(
        self, tx: Tx, account_id: str, result: FactorResult, info: RequestInfo
    ) -> TokenPair | errors.AuthsvcError:
        """For a way in that proved both factors in one step (a passkey with user verification):
        the same rules as after a second factor. The account's second-factor lock does not
        apply: it is caused by wrong answers from someone who has the password, which proves
        nothing here, and it must not keep the owner's passkey out, even on a new device (the
        owner is notified of a new device as always). Returns the outcome for ``deliver``."""
        account = tx.one("lock_account", account_id=account_id)
        assert account is not None  # the caller's proof named this account
        known_token_id = self._devices.known_to(tx, info.device_token, account_id)
        return self._complete(tx, account, result, info, known_token_id)

    def _complete(
        self, tx: Tx, account: dict, result: FactorResult | None, info: RequestInfo,
        known_token_id: str | None,
    ) -> TokenPair | errors.AuthsvcError:
        account_id = str(account["id"])
        if account["status"] == "frozen":  # whichever path, after both proofs
            audit(tx, "user", "login.refused_frozen", account_id)
            return errors.AccountFrozen("this account is frozen; contact support")
        if account["reset_required"]:  # after an unfreeze: the reset proves the phone too
            audit(tx, "user", "login.refused_reset_required", account_id)
            return errors.PasswordResetRequired(
                "reset the password first (POST /v1/password-resets: a code to the verified phone and "
                "a second factor)")
        if account["password_change_required"]:
            return errors.PasswordChangeRequired(
                "the password must be changed before signing in",
                extra={"password_change_token": self._password_change.issue(tx, account_id)},
            )
        assert result is not None
        device = self._devices.grant(tx, account_id, info.device_token, known_token_id,
                                     device_name=device_name(info.user_agent))
        outcome = self._sessions.open(tx, account, result, info, device_token_id=device.token_id)
        outcome = dataclasses.replace(outcome, device_token=device.token)
        self._factors.clear_escalation(tx, account)
        self._throttle.succeeded([email_subject(account["email_normalized"], "")])
        new_device = not device.known
        if new_device:
            self._reports.new_device(tx, account, outcome.session_id, info)
        self._outbox.event(
            tx, "login.succeeded",
            {"account_id": account_id, "session_id": outcome.session_id, "method": result.method,
             "new_device": new_device},
        )
        # Last before COMMIT: the audit chain's lock is held for as short as possible.
        audit(tx, "user", "login.succeeded", account_id, method=result.method, new_device=new_device)
        return outcome

    def deliver(self, outcome: _Answer | errors.AuthsvcError) -> _Answer:
        """After the transaction committed: send what it queued, count, answer or raise."""
        self._outbox.kick()
        if isinstance(outcome, errors.AuthsvcError):
            self._metrics.logins.labels("second_factor", outcome.code).inc()
            raise outcome
        self._metrics.logins.labels("second_factor", "ok").inc()
        return outcome

    def _enrollment_grant(self, tx: Tx, account_id: str) -> EnrollmentGrant:
        ttl = self._one_time.enrollment_token_ttl
        token = issue_enrollment_token(tx, account_id, ttl)
        audit(tx, "user", "login.sms_enrollment", account_id)
        return EnrollmentGrant(token, ttl)
