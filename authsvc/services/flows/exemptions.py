"""Payment exemptions from step-up, counted exactly once; the user's trusted payees.

Rules (README, "Payments: exemptions that cannot be gamed"; docs/api-guide.md, "Payment
exemptions"; modelled on the PSD2 strong-authentication standard, Commission Delegated
Regulation 2018/389):
- every exemption is off unless configured: ``AUTHSVC_LOW_VALUE_EXEMPTION`` per currency,
  ``AUTHSVC_TRUSTED_PAYEE_EXEMPTION``, ``AUTHSVC_RECURRING_EXEMPTION``;
- they apply only to ``payment.authorize``; the first that fits wins, in this order:
  * ``trusted_payee`` (art. 13): the payee is on the account's trusted list, which the user
    maintains; each addition needs a step-up ``payee.trust``;
  * ``recurring`` (art. 14): the same amount and currency to the same payee as a series that
    a full step-up started (a ``payment.authorize`` asked with ``"recurring": true``); at most
    one exempt payment per series per ``policy.Exemptions.recurring_min_interval`` (24 hours), counted from the
    series' start or its last exempt payment;
  * ``low_value`` (art. 16): the amount is at most the currency's ``max_amount`` and the exempt
    low-value payments in that currency since the last full step-up of the account, this one
    included, stay within ``max_cumulative`` and ``max_count``;
- counters are per account and taken exactly once: one row per account and currency (or per
  series) moved only by a conditional ``UPDATE ... WHERE <still under the cap> RETURNING``, in
  the transaction that issues the token; PostgreSQL re-checks the condition on the row a
  concurrent winner left, so two racing payments never both fit under a cap only one fits
  under. A counter is taken when the token is issued (a token never redeemed still counts);
- any full step-up of the account (a second factor answered) puts the low-value counters of
  every currency back at zero;
- exemptions are suspended (the payment gets a full challenge) while: the session's device is
  not known (no live device token) or became known less than ``AUTHSVC_EXEMPTION_COOLDOWN``
  ago (7 days); a password reset completed within the cooldown; the account is frozen or was
  frozen or unfrozen within the cooldown; the account's second-factor lock holds; the service
  sees a list attack (``Throttle.attack_active``);
- every exemption granted is written to the audit log (``step_up.exempted``) with its kind,
  the transaction hash and, for low value, the counters after it;
- an exempted token tells the truth: ``amr`` is empty (no method was presented for this
  payment, so no ``mfa``), ``acr`` is the session's (the assurance its sign-in established,
  which is all the token can claim), and the token and its redemption name the exemption.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from ... import errors
from ...config import Settings
from ...policy import EXEMPTIONS
from ...store import Store, Tx
from ..core.sessions import Principal
from ..core.throttle import Throttle
from ..platform.audit import audit


class StepUpConsumer(Protocol):
    """What payees need of ``StepUpService`` (named here, so this module does not import it)."""

    def consume(self, tx: Tx, *, account_id: str, session_id: str | None, action: str, token: str | None) -> None: ...


LOW_VALUE = "low_value"
TRUSTED_PAYEE = "trusted_payee"
RECURRING = "recurring"


@dataclass(frozen=True)
class Grant:
    kind: str
    detail: dict


class PaymentExemptions:
    def __init__(self, *, settings: Settings, throttle: Throttle) -> None:
        self._caps = {cap.currency: cap for cap in settings.low_value_exemptions}
        self._trusted = settings.trusted_payee_exemption
        self._recurring = settings.recurring_exemption
        self._cooldown = settings.exemption_cooldown
        self._throttle = throttle

    @property
    def enabled(self) -> bool:
        return bool(self._caps or self._trusted or self._recurring)

    def _eligible(self, canonical: dict) -> bool:
        """Whether any configured exemption could fit this payment (no counter read)."""
        cap = self._caps.get(canonical["currency"])
        return bool(self._trusted or self._recurring or (cap and Decimal(canonical["amount"]) <= cap.max_amount))

    def suspension(self, tx: Tx, principal: Principal) -> str | None:
        """Why exemptions are suspended for this session now, or None."""
        row = tx.one("exemption_context", account_id=principal.account_id, session_id=principal.session_id,
                     cooldown=self._cooldown)
        if row is None:
            return "unknown_session"
        for reason in ("frozen", "locked", "new_device", "password_reset"):
            if row[reason]:
                return reason
        if self._throttle.attack_active():
            return "attack"
        return None

    def take(self, tx: Tx, principal: Principal, canonical: dict, tx_hash: str) -> Grant | None:
        """The exemption this payment gets, its counter already taken in ``tx``, or None (then
        the payment needs a full step-up). Audited when granted."""
        if not self.enabled or not self._eligible(canonical):
            return None
        if self.suspension(tx, principal) is not None:
            return None
        account_id = principal.account_id
        grant = None
        if self._trusted and tx.one("trusted_payee", account_id=account_id, payee=canonical["payee"]):
            grant = Grant(TRUSTED_PAYEE, {})
        elif self._recurring and (series := tx.one("take_recurring_exemption", account_id=account_id,
                                                   transaction_hash=tx_hash,
                                                   interval=EXEMPTIONS.recurring_min_interval)):
            grant = Grant(RECURRING, {"series_id": str(series["id"])})
        else:
            cap = self._caps.get(canonical["currency"])
            amount = Decimal(canonical["amount"])
            if cap is not None and amount <= cap.max_amount:
                tx.run("ensure_exemption_counter", account_id=account_id, currency=cap.currency)
                taken = tx.one("take_low_value_exemption", account_id=account_id, currency=cap.currency,
                               amount=amount, max_cumulative=cap.max_cumulative, max_count=cap.max_count)
                if taken is not None:
                    grant = Grant(LOW_VALUE, {"cumulative": format(taken["cumulative"].normalize(), "f"),
                                              "count": taken["count"]})
        if grant is None:
            return None
        audit(tx, "user", "step_up.exempted", account_id, exemption=grant.kind, transaction_hash=tx_hash,
              session_id=principal.session_id, currency=canonical["currency"], **grant.detail)
        return grant

    @staticmethod
    def full_step_up(tx: Tx, account_id: str) -> None:
        """A second factor was answered: the low-value counters start again from zero."""
        tx.run("reset_exemption_counters", account_id=account_id)

    @staticmethod
    def start_series(tx: Tx, account_id: str, canonical: dict, tx_hash: str) -> str:
        """A full step-up of a payment asked as recurring starts (or restarts) its series."""
        series_id = tx.scalar("start_recurring_series", id=str(uuid.uuid4()), account_id=account_id,
                              transaction_hash=tx_hash, transaction=json.dumps(canonical))
        audit(tx, "user", "payment.recurring_started", account_id, series_id=str(series_id),
              transaction_hash=tx_hash)
        return str(series_id)


class TrustedPayees:
    """The account's trusted payees: listed and removed with the session alone, added under a
    step-up ``payee.trust`` (consumed in the transaction of the addition). Both audited."""

    def __init__(self, *, store: Store, step_up: StepUpConsumer) -> None:
        self._store = store
        self._step_up = step_up

    def list(self, principal: Principal) -> list[dict]:
        with self._store.transaction() as tx:
            rows = tx.all("trusted_payees_of_account", account_id=principal.account_id)
        return [{"payee": r["payee"], "created_at": r["created_at"].isoformat()} for r in rows]

    def add(self, principal: Principal, payee: str, step_up_token: str | None) -> dict:
        check_payee(payee)
        with self._store.transaction() as tx:
            account = tx.one("lock_account", account_id=principal.account_id)
            if account is None or account["status"] != "active":
                raise errors.InvalidToken("unknown or frozen account")
            self._step_up.consume(tx, account_id=principal.account_id, session_id=principal.session_id,
                                  action="payee.trust", token=step_up_token)
            if tx.scalar("trusted_payee_count", account_id=principal.account_id) >= EXEMPTIONS.max_trusted_payees:
                raise errors.Conflict(f"at most {EXEMPTIONS.max_trusted_payees} trusted payees")
            row = tx.one("insert_trusted_payee", account_id=principal.account_id, payee=payee)
            if row is None:
                raise errors.Conflict("this payee is already trusted")
            audit(tx, "user", "payee.trusted", principal.account_id, payee=payee, session_id=principal.session_id)
        return {"payee": payee, "created_at": row["created_at"].isoformat()}

    def remove(self, principal: Principal, payee: str) -> None:
        check_payee(payee)
        with self._store.transaction() as tx:
            if tx.one("delete_trusted_payee", account_id=principal.account_id, payee=payee) is None:
                raise errors.NotFound("this payee is not on the trusted list")
            audit(tx, "user", "payee.untrusted", principal.account_id, payee=payee, session_id=principal.session_id)


def check_payee(payee: object) -> None:
    """What the spec says of a trusted payee: 1 to 256 characters, no NUL. (A payee that
    ``transaction.payee`` would refuse can be listed, but no payment ever names it.)"""
    if not isinstance(payee, str) or not 1 <= len(payee) <= 256 or "\x00" in payee:
        raise errors.InvalidRequest("the payee is not valid",
                                    errors=[{"field": "payee", "message": "1 to 256 characters, no NUL"}])
