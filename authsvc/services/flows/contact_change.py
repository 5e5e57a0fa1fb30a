"""Changing the phone or the email: bearer + step-up, then a code sent to the NEW contact.

A new phone must be able to receive our SMS (``SmsPolicy.check_number``: 400
``unsupported_phone``), and the code SMS to it is within the caps of ``SmsPolicy`` (past one
the answer is the same and nothing is sent). Until the code is verified, resets and
notifications keep using the old contact; when it is,
the old contact is told (with a "this wasn't me" link). An email that already belongs to
another account, or looks like one (same confusable skeleton), answers the same and gets a
notice instead of a code, so the change cannot succeed and nothing reveals the other account.
"""

from __future__ import annotations

import secrets
import uuid

from ... import errors
from ...policy import OneTime
from ...security import contexts, crypto
from ...store import Store
from ..core import contacts
from ..core.attempts import failed_attempt
from ..core.ids import require_uuid
from ..core.sessions import Principal
from ..core.sms_policy import SmsPolicy
from ..platform import messages
from ..platform.audit import audit
from ..platform.outbox import Outbox
from .reports import ReportService
from .step_up import StepUpService


class ContactChangeService:
    def __init__(
        self,
        *,
        one_time: OneTime,
        store: Store,
        cipher: crypto.Cipher,
        step_up: StepUpService,
        reports: ReportService,
        outbox: Outbox,
        sms: SmsPolicy,
    ) -> None:
        self._sms = sms
        self._one_time = one_time
        self._store = store
        self._cipher = cipher
        self._step_up = step_up
        self._reports = reports
        self._outbox = outbox

    _purpose = staticmethod(contexts.contact_change_purpose)

    def _mac(self, change_id: str, code: str) -> bytes:
        return self._cipher.mac(self._purpose(change_id), code)

    def start(self, principal: Principal, *, kind: str, value: str, step_up_token: str | None,
              ip: str | None = None) -> tuple[str, int]:
        if kind == "phone":
            new_value = new_normalized = contacts.normalize_phone(value)
            self._sms.check_number(new_value, field="phone")
        else:
            new_value, new_normalized = contacts.normalize_email(value)
        change_id = str(uuid.uuid4())
        code = crypto.new_numeric_code()
        ttl = self._one_time.code_ttl
        with self._store.transaction() as tx:
            locale = messages.locale_of(tx.one("lock_account", account_id=principal.account_id))
            self._step_up.consume(tx, account_id=principal.account_id, session_id=principal.session_id,
                                  action="contact.change", token=step_up_token)
            owner = tx.one("account_taking_email", email_normalized=new_normalized,
                           email_skeleton=contacts.email_skeleton(new_normalized),
                           except_account=principal.account_id) if kind == "email" else None
            taken = owner is not None
            tx.run(
                "insert_contact_change",
                id=change_id,
                account_id=principal.account_id,
                kind=kind,
                new_value=new_value,
                new_normalized=new_normalized,
                code_mac=self._mac(change_id, secrets.token_hex(16) if taken else code),
                value_taken=taken,
                ttl=ttl,
            )
            minutes = ttl // 60
            if kind == "phone":
                self._sms.send(tx, to=new_value, purpose="phone_change", account_id=principal.account_id, ip=ip,
                               body=messages.sms(locale, "phone_change_code", code=code, minutes=minutes))
            elif taken:  # to the owner's own address (the typed one may only look like it)
                assert owner is not None  # taken means found
                self._outbox.email(tx, owner["email"], *messages.email(locale, "email_change_taken"))
            else:
                self._outbox.email(tx, new_value, *messages.email(locale, "email_change_code", code=code,
                                                                  minutes=minutes))
            audit(tx, "user", "contact.change_requested", principal.account_id, kind=kind)
        self._outbox.kick()
        return change_id, ttl

    def verify(self, principal: Principal, change_id: str, code: str) -> None:
        failed = errors.VerificationFailed("the code does not match a pending change")
        require_uuid(change_id, failed)
        try:
            with self._store.transaction() as tx:
                row = tx.one("lock_live_contact_change", id=change_id, account_id=principal.account_id)
                if row is None:
                    raise failed
                if row["value_taken"] or not self._cipher.mac_matches(
                    row["code_mac"], self._purpose(change_id), code
                ):
                    failed_attempt(tx, "contact_change_failed", change_id, max_attempts=self._one_time.max_attempts)
                    ok = False
                else:
                    if tx.one("complete_contact_change", id=change_id) is None:
                        raise failed
                    old = tx.one("account_by_id", account_id=principal.account_id)
                    assert old is not None  # the session's account (a foreign key)
                    if row["kind"] == "phone":
                        tx.run("set_phone", account_id=principal.account_id, phone=row["new_value"])
                    else:
                        tx.run("set_email", account_id=principal.account_id, email=row["new_value"],
                               email_normalized=row["new_normalized"],
                               email_skeleton=contacts.email_skeleton(row["new_normalized"]))
                    link = self._reports.report_link(tx, principal.account_id, f"{row['kind']}_changed")
                    key, locale = f"{row['kind']}_changed", messages.locale_of(old)
                    # the OLD contacts hear of it
                    self._outbox.sms(tx, old["phone"], messages.sms(locale, key, link=link))
                    self._outbox.email(tx, old["email"], *messages.email(locale, key, link=link))
                    audit(tx, "user", "contact.changed", principal.account_id, kind=row["kind"])
                    self._outbox.event(tx, "contact.changed", {"account_id": principal.account_id,
                                                               "kind": row["kind"]})
                    ok = True
        except errors.UniqueViolation:
            raise failed from None  # the email became another account's meanwhile
        self._outbox.kick()
        if not ok:
            raise failed
