"""Step-up: a fresh second factor bound to a session, an action and a canonical transaction.

Dynamic linking (PSD2): the token carries the action and the SHA-256 of the canonical
transaction (amount as a normalised decimal string, ISO 4217 currency, payee); redeeming it
with anything else answers ``transaction_mismatch``. For WebAuthn the challenge itself is
derived from the canonical transaction, so the authenticator signs over what is paid.
Tokens work once: redeemed by a payment backend, or consumed by one of our own endpoints
(``consume``) inside the transaction of the change it authorises.

``payment.authorize`` also needs a recent sign-in: a session whose ``auth_time`` is older
than ``payment_max_session_age`` is refused (401 ``reauthentication_required``, RFC 9470
``max_age``) when the challenge is made and when it is answered.

Wrong answers (docs/api-guide.md, "5. Step-up: confirming a payment"): 5 kill the challenge
(the count is committed although the request fails) and count for the account as in login. The
account's second-factor lock, which only wrong answers from unknown devices cause, pauses
step-up of a session whose device is unknown (its device token is no longer live); a session
opened from a known device ignores it, so an attacker who has only the password cannot stop the
signed-in owner from paying. Its wrong answers count as a known device's and for that session:
the session's step-up waits while 10 of its own wrong answers fall in 15 minutes
(``SecondFactors.known_device_wait``), and the owner is told when that wait starts. A stolen
session's wrong answers therefore pause only that session, never the owner's other sessions and
devices.

Payment exemptions (``services/flows/exemptions.py``, off unless configured): a ``payment.authorize``
that an exemption covers gets its step-up token at once, without a challenge (the token names
its exemption, its ``amr`` is empty). A payment asked with ``recurring: true`` never does: it
is the full step-up that starts a recurring series, and neither does one asked with
``allow_exemption: false`` (a backend that refused an exempted payment). Any full step-up puts the account's
low-value counters back at zero.

Secure Payment Confirmation (``services/factors/spc.py``): a ``payment.authorize`` challenge of an
account with payment credentials also offers ``spc``, the ``PaymentRequest`` data for the same
challenge; an ``spc`` answer must be a ``payment.get`` assertion showing exactly the bound
payee, total and instrument, and is then treated as any other factor (counted when wrong,
exactly-once token when right).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ... import errors
from ...config import Settings
from ...metrics import Metrics
from ...policy import FACTOR_LOCK, ONE_TIME
from ...security import contexts, crypto, webauthn_payment
from ...store import Store, Tx
from ..core.attempts import failed_attempt
from ..core.devices import KnownDevices
from ..core.ids import require_uuid
from ..core.sessions import Principal
from ..factors import spc
from ..factors.second_factor import SecondFactors
from ..platform.audit import audit
from ..platform.outbox import Outbox
from .exemptions import PaymentExemptions

if TYPE_CHECKING:
    from .reports import ReportService

# fullmatch, never match + "$": "$" also matches before a final newline ("1000\n")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,6})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def canonical_transaction(tx: dict | None) -> dict | None:
    """The canonical form of ``{amount, currency, payee}``; a 400 for anything else."""
    if tx is None:
        return None
    problems = []
    amount = tx.get("amount")
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        problems.append({"field": "transaction.amount", "message": "a positive decimal string such as \"1200.50\""})
    currency = tx.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        problems.append({"field": "transaction.currency", "message": "an ISO 4217 code such as \"JPY\""})
    payee = tx.get("payee")
    if not isinstance(payee, str) or not 1 <= len(payee) <= 256 or not payee.isprintable():
        problems.append({"field": "transaction.payee", "message": "1 to 256 printable characters"})
    if not problems:
        assert isinstance(amount, str)  # checked above
        try:
            value = Decimal(amount)
        except InvalidOperation:  # pragma: no cover - the pattern already excludes it
            value = Decimal(0)
        if value <= 0:
            problems.append({"field": "transaction.amount", "message": "must be greater than zero"})
    if problems:
        raise errors.InvalidRequest("the transaction is not valid", errors=problems)
    assert isinstance(amount, str)  # checked above
    normalized = format(Decimal(amount).normalize(), "f")
    return {"amount": normalized, "currency": currency, "payee": payee}


def transaction_hash(action: str, canonical: dict | None) -> str:
    body = json.dumps({"action": action, "transaction": canonical}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def webauthn_challenge(challenge_id: str, tx_hash: str) -> bytes:
    return hashlib.sha256(contexts.STEP_UP_LABEL + challenge_id.encode() + b"\x00" + tx_hash.encode()).digest()


@dataclass(frozen=True)
class StepUpChallenge:
    challenge_id: str
    expires_in: int
    methods: list[str]
    webauthn_options: dict | None
    spc: dict | None = None


@dataclass(frozen=True)
class ExemptStepUp:
    """A payment an exemption covers: its step-up token at once."""

    exempt: str
    step_up_token: str
    expires_in: int
    acr: str
    amr: list[str]
    transaction_hash: str


class StepUpService:
    def __init__(
        self, *, settings: Settings, store: Store, factors: SecondFactors, outbox: Outbox, metrics: Metrics,
        devices: KnownDevices, exemptions: PaymentExemptions,
        reports: ReportService | None = None,
    ) -> None:
        self._reports = reports
        self._settings = settings
        self._store = store
        self._factors = factors
        self._outbox = outbox
        self._metrics = metrics
        self._devices = devices
        self._exemptions = exemptions

    def _check_action(self, action: str, transaction: dict | None) -> dict | None:
        if action not in self._settings.step_up_actions:
            raise errors.InvalidRequest(
                "unknown action", errors=[{"field": "action", "message": "not an action this service knows"}]
            )
        canonical = canonical_transaction(transaction)
        if action == "payment.authorize" and canonical is None:
            raise errors.InvalidRequest(
                "payment.authorize needs a transaction",
                errors=[{"field": "transaction", "message": "required for payment.authorize"}],
            )
        return canonical

    def _check_session_age(self, principal: Principal, action: str) -> None:
        max_age = self._settings.payment_max_session_age
        if action == "payment.authorize" and time.time() - principal.auth_time > max_age:
            raise errors.ReauthenticationRequired(
                max_age, f"payments need a sign-in within the last {max_age} seconds; sign in again"
            )

    def _check_paused(self, tx: Tx, principal: Principal) -> str | None:
        """Raise 429 while second-factor checks are paused for this session; return the
        session's device token id when its device is known (then the account lock, caused by
        unknown devices, does not apply: only this session's own wrong answers do)."""
        known = self._devices.of_session(tx, principal.session_id)
        if known is not None:
            remaining = self._factors.known_device_wait(tx, session_id=principal.session_id)
        else:
            remaining = self._factors.lock_remaining(tx, principal.account_id)
        if remaining:
            self._metrics.throttle.labels("throttled", "factor_lock", "known" if known else "stranger").inc()
            raise errors.RateLimited(remaining, "second-factor checks for this account are paused")
        return known

    def create(
        self, principal: Principal, action: str, transaction: dict | None, *, recurring: bool = False,
        allow_exemption: bool = True,
    ) -> StepUpChallenge | ExemptStepUp:
        canonical = self._check_action(action, transaction)
        if recurring and action != "payment.authorize":
            raise errors.InvalidRequest(
                "only a payment can start a recurring series",
                errors=[{"field": "recurring", "message": "only with payment.authorize"}],
            )
        self._check_session_age(principal, action)
        tx_hash = transaction_hash(action, canonical)
        challenge_id = str(uuid.uuid4())
        ttl = self._settings.step_up_ttl
        if action == "payment.authorize" and allow_exemption and not recurring and self._exemptions.enabled:
            assert canonical is not None  # _check_action requires one for a payment
            exempt = self._exempt(principal, canonical, tx_hash)
            if exempt is not None:
                return exempt
        with self._store.transaction() as tx:
            self._check_paused(tx, principal)
            offer = self._factors.offer(
                tx, principal.account_id, challenge=webauthn_challenge(challenge_id, tx_hash)
            )
            methods, options, challenge = offer.methods, offer.webauthn_options, offer.webauthn_challenge
            if not methods:
                raise errors.Conflict("the account has no second factor to step up with")
            spc_request = None
            if action == "payment.authorize" and challenge is not None:
                payment_ids = self._factors.payment_credential_ids(tx, principal.account_id)
                if payment_ids:
                    assert canonical is not None  # _check_action requires one for a payment
                    expected = spc.expected_payment(self._settings, canonical)
                    spc_request = webauthn_payment.payment_request(
                        self._factors.webauthn, credential_ids=payment_ids, challenge=challenge,
                        payee_name=expected["payeeName"], total=expected["total"], instrument=expected["instrument"],
                    )
                    methods = ["spc", *methods]
            tx.run(
                "insert_step_up_challenge",
                id=challenge_id,
                account_id=principal.account_id,
                session_id=principal.session_id,
                action=action,
                transaction=json.dumps(canonical) if canonical else None,
                transaction_hash=tx_hash,
                methods=methods,
                webauthn_challenge=challenge,
                ttl=ttl,
                recurring=recurring,
            )
        return StepUpChallenge(challenge_id, ttl, methods, options, spc_request)

    def _exempt(self, principal: Principal, canonical: dict, tx_hash: str) -> ExemptStepUp | None:
        """The token of an exempted payment (the exemption's counter taken, the grant audited, the
        token stored: one transaction), or None when no exemption covers it."""
        token = crypto.new_token()
        ttl = self._settings.step_up_ttl
        with self._store.transaction() as tx:
            grant = self._exemptions.take(tx, principal, canonical, tx_hash)
            if grant is None:
                return None
            tx.run(
                "insert_exempt_step_up_token",
                id=str(uuid.uuid4()),
                token_hash=crypto.hash_token(token),
                account_id=principal.account_id,
                session_id=principal.session_id,
                transaction=json.dumps(canonical),
                transaction_hash=tx_hash,
                acr=principal.acr,
                exemption=grant.kind,
                ttl=ttl,
            )
        return ExemptStepUp(grant.kind, token, ttl, principal.acr, [], tx_hash)

    def verify(
        self, principal: Principal, challenge_id: str, *, method: str, code: str | None, credential: Any
    ) -> dict:
        rejected = errors.InvalidFactor("the second factor was not accepted")
        require_uuid(challenge_id, rejected)
        token = crypto.new_token()
        ttl = self._settings.step_up_ttl
        with self._store.transaction() as tx:
            row = tx.one("lock_live_step_up_challenge", id=challenge_id, session_id=principal.session_id)
            if row is None:
                raise rejected
            self._check_session_age(principal, row["action"])
            account = tx.one("lock_account", account_id=principal.account_id)
            assert account is not None  # the session's account (a foreign key)
            known = self._check_paused(tx, principal)
            result = None
            if method in row["methods"]:
                result = self._factors.verify(
                    tx, principal.account_id, method=method, code=code, credential=credential,
                    webauthn_challenge=bytes(row["webauthn_challenge"]) if row["webauthn_challenge"] else None,
                    payment=spc.expected_payment(self._settings, row["transaction"]) if method == "spc" else None,
                )
            if result is None:
                failed_attempt(tx, "step_up_challenge_failed", challenge_id, max_attempts=ONE_TIME.max_attempts)
                if self._factors.record_failure(tx, account, from_known_device=known is not None,
                                                device_token_id=known, session_id=principal.session_id):
                    if self._reports is not None:
                        self._reports.factor_guessing(tx, account, None, failures=FACTOR_LOCK.failures)
                answer: dict | None = None
            else:
                if tx.one("step_up_challenge_verified", id=challenge_id) is None:
                    raise rejected
                amr = [m for m in result.amr if m != "pwd"]
                tx.run(
                    "insert_step_up_token",
                    id=str(uuid.uuid4()),
                    token_hash=crypto.hash_token(token),
                    challenge_id=challenge_id,
                    account_id=principal.account_id,
                    session_id=principal.session_id,
                    action=row["action"],
                    transaction=json.dumps(row["transaction"]) if row["transaction"] else None,
                    transaction_hash=row["transaction_hash"],
                    acr=result.acr,
                    amr=amr,
                    ttl=ttl,
                )
                self._exemptions.full_step_up(tx, principal.account_id)
                if row["recurring"]:
                    self._exemptions.start_series(tx, principal.account_id, row["transaction"],
                                                  row["transaction_hash"])
                audit(tx, "user", "step_up.verified", principal.account_id, action=row["action"],
                      transaction_hash=row["transaction_hash"])
                self._outbox.event(tx, "step_up.verified", {
                    "account_id": principal.account_id, "session_id": principal.session_id,
                    "action": row["action"], "transaction_hash": row["transaction_hash"],
                })
                answer = {
                    "step_up_token": token, "expires_in": ttl, "acr": result.acr, "amr": amr,
                    "transaction_hash": row["transaction_hash"],
                }
        self._outbox.kick()
        if answer is None:
            raise rejected
        return answer

    def _locked_token(self, tx: Tx, token: str) -> dict | None:
        row = tx.one("lock_step_up_token", token_hash=crypto.hash_token(token),
                     max_age=self._settings.session_max_age, idle=self._settings.session_idle_timeout)
        if row is None or not row["live"] or not row["session_live"]:
            return None
        return row

    def redeem(self, client_id: str, *, token: str, action: str, transaction: dict | None) -> dict:
        """A payment backend redeems a step-up token, once, for exactly what was verified."""
        with self._store.transaction() as tx:
            row = self._locked_token(tx, token)
            if row is None:
                raise errors.InvalidToken("unknown, expired or foreign step-up token")
            if row["redeemed_at"] is not None:
                raise errors.AlreadyRedeemed("this step-up token was already used")
            try:
                canonical = canonical_transaction(transaction)
            except errors.InvalidRequest:
                canonical = {"invalid": True}
            if action != row["action"] or transaction_hash(action, canonical) != row["transaction_hash"]:
                raise errors.TransactionMismatch("the action or transaction differs from what was verified")
            redeemed = tx.one("redeem_step_up_token", id=row["id"], redeemed_by=client_id)
            if redeemed is None:
                raise errors.AlreadyRedeemed("this step-up token was already used")
            audit(tx, f"client:{client_id}", "step_up.redeemed", str(row["account_id"]), action=action,
                  exemption=row["exemption"])
        return {
            "account_id": str(row["account_id"]),
            "session_id": str(row["session_id"]),
            "action": row["action"],
            "transaction": row["transaction"],
            "acr": row["acr"],
            "amr": list(row["amr"]),
            "verified_at": redeemed["verified_at"].isoformat(),
            "exemption": row["exemption"],
        }

    def consume(self, tx: Tx, *, account_id: str, session_id: str | None, action: str, token: str | None) -> None:
        """Use a step-up token for one of this service's own sensitive endpoints."""
        required = errors.StepUpRequired(f"this change needs a step-up token for {action} (X-Step-Up-Token)")
        if not token:
            raise required
        row = self._locked_token(tx, token)
        if (
            row is None
            or row["redeemed_at"] is not None
            or str(row["account_id"]) != account_id
            or str(row["session_id"]) != session_id
            or row["action"] != action
        ):
            raise required
        if tx.one("redeem_step_up_token", id=row["id"], redeemed_by="authsvc") is None:
            raise required
