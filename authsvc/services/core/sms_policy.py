"""SMS policy: which numbers may get an SMS, and how many SMS the service sends for requests.

Every flow that sends an SMS because of a request (registration, the SMS login path of an
account without a factor, password reset, phone change) goes through :class:`SmsPolicy`, so
SMS pumping (an attacker making us pay for texts to premium-rate or foreign numbers) is held
in one place. Rules (README, "Holding against the list attack (credential stuffing)", "Reset SMS
quota"; the SMS caps in README, "Configuration"):

- Numbers. A number a user gives us (registration, phone change) must be able to receive our
  SMS, else 400 ``unsupported_phone`` naming the field: checked offline with ``phonenumbers``,
  it must be in a country listed in ``AUTHSVC_SMS_COUNTRIES`` (its own region code:
  ``+881`` satellite numbers have none and are refused; a Guernsey ``+44 7911`` number is GG,
  not GB) and of type MOBILE. Premium-rate, shared-cost, toll-free, pager, personal, VoIP,
  UAN, voicemail, fixed-line and unknown types are refused. FIXED_LINE_OR_MOBILE is accepted:
  for the US, Canada and other places phonenumbers cannot tell mobile from fixed lines
  offline, and refusing it would refuse every US number; the caps below bound what such a
  number can cost, and Twilio Lookup (next rule) closes the gap where it is switched on.
- Lookup. With ``AUTHSVC_TWILIO_LOOKUP=true`` a number that passed the offline check is also
  looked up (Twilio Lookup v2, line type intelligence) and only ``mobile`` is accepted. Answers
  are cached for 30 days (a lookup is paid). When Lookup cannot answer, the offline verdict
  stands (logged and counted): an outage of Twilio's Lookup must not stop registrations, and
  the offline check plus the caps still hold.
- Caps. Each SMS is counted per number, per account, per client (IPv4 address, IPv6 /64), per
  network (IPv4 /24, IPv6 /48), per destination country and in total over the last hour
  (``AUTHSVC_SMS_*_HOURLY_CAP``). Past a cap the request's answer is unchanged but nothing is
  sent; the metric ``authsvc_sms{decision="cap_<which>"}`` counts it and the webhook
  ``sms.cap_reached`` fires, at most once an hour per cap (per country for the country cap),
  never once per blocked SMS. Only sends count, not blocked attempts.
- Race-free, without a global lock. Each cap's scope ("total", "country:JP", "number:+81...")
  has lock rows and counters per minute; one statement (``sms_take``, migrations 0071 and 0091)
  locks the scopes (in sorted order: no lock order to get wrong), sums each one's last hour (at
  most 61 counter rows per shard, so the cost does not grow with the traffic), and counts and
  records the send unless a cap is reached. A send counts from its minute through the 60 whole
  minutes after it, so every window of an hour holds at most the cap. Small caps have one lock
  row: decisions on that scope wait for each other's COMMIT. A broad scope (the global and
  country caps, ``shards_for``) has K rows: a decision takes a free one and goes ahead while the
  committed count is at least K below the cap (at most K decisions can be in flight, so the cap
  holds however they commit); closer to the cap it takes all K rows and counts exactly, as one
  lock would. Concurrent requests cannot pass a cap together, and a rolled-back request leaves
  no count behind. PostgreSQL rather than Redis: the count then commits or rolls back with the
  SMS's outbox row (an SMS is never sent uncounted, nor counted unsent), and the caps hold with
  no Redis configured. Callers still ask as late in their transaction as they can (the rows stay
  locked until they commit).
- Sending is re-checked. A stored number (login, reset) that no longer passes the offline
  check, e.g. after ``AUTHSVC_SMS_COUNTRIES`` changed, gets nothing (``decision="refused_number"``).
- Notices are not capped. Security notices (new sign-in, password or factor changed, account
  paused, contact changed, operator actions) go only to an account's verified phone and are
  caused only by a request that passed the password (most also the second factor) or by an
  operator; dropping one could hide an attack from its owner. They do not go through here.
- No SMS is ever caused by a request that failed its password: the login path asks only after
  the password verified; registration, reset and phone change involve no password check.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType

from ... import errors
from ...adapters.sms import LineTypeLookup
from ...metrics import ANONYMOUS_SMS_PURPOSES, Metrics
from ...policy import SmsCaps
from ...store import Store, Tx
from ..platform.outbox import Outbox

_log = logging.getLogger("authsvc.services.sms_policy")

ACCEPTED_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
ACCEPTED_LINE_TYPES = ("mobile",)  # Twilio Lookup's line_type_intelligence.type
_TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "a fixed line",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.VOIP: "a VoIP number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (forwarding) number",
    PhoneNumberType.PAGER: "a pager",
    PhoneNumberType.UAN: "a company number",
    PhoneNumberType.VOICEMAIL: "a voicemail number",
}
CAPS = ("total", "country", "network", "client", "account", "number")  # checked broadest first
MAX_SHARDS = 8


@dataclass(frozen=True)
class Verdict:
    """Offline check of one number: ``reason`` is None when SMS may go to it."""

    country: str
    reason: str | None


def shards_for(cap: int) -> int:
    """How many lock rows a cap's scope gets: 1 (exact and serialised) below 200 an hour, up to
    ``MAX_SHARDS`` above, so that the fast path's margin (a decision goes ahead without waiting
    while the count is at least that many below the cap) stays under 1% of the cap."""
    return max(1, min(MAX_SHARDS, cap // 100))


def network_keys(ip: str | None) -> tuple[str | None, str | None]:
    """``(client, network)`` of an address: IPv4 address and /24, IPv6 /64 and /48 (an IPv4
    address mapped into IPv6 counts as IPv4). Unparseable text is its own client, no network."""
    if not ip:
        return None, None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "raw:" + ip[:100], None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr), str(ipaddress.ip_network(f"{addr}/24", strict=False))
    return (str(ipaddress.ip_network(f"{addr}/64", strict=False)),
            str(ipaddress.ip_network(f"{addr}/48", strict=False)))


class SmsPolicy:
    def __init__(
        self,
        *,
        caps: SmsCaps,
        countries: tuple[str, ...],
        store: Store,
        outbox: Outbox,
        metrics: Metrics,
        lookup: LineTypeLookup | None = None,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._metrics = metrics
        self._lookup = lookup
        self._countries = frozenset(countries)
        self._window = caps.window
        self._limits = {
            "total": caps.total,
            "country": caps.country,
            "network": caps.network,
            "client": caps.client,
            "account": caps.account,
            "number": caps.number,
        }
        self._shards = {cap: shards_for(limit) for cap, limit in self._limits.items()}

    # ------------------------------------------------------------------ numbers
    def verdict(self, phone: str) -> Verdict:
        """The offline check (type and country) of an E.164 number."""
        try:
            number = phonenumbers.parse(phone, None)
        except phonenumbers.NumberParseException:
            return Verdict("", "not a valid phone number")
        country = phonenumbers.region_code_for_number(number) or ""
        if not phonenumbers.is_valid_number(number):
            return Verdict(country, "not a valid phone number")
        kind = phonenumbers.number_type(number)
        if kind not in ACCEPTED_TYPES:
            what = _TYPE_NAMES.get(kind, "not a mobile number")
            return Verdict(country, f"{what} cannot receive SMS codes; give a mobile number")
        if country not in self._countries:
            return Verdict(country, "SMS codes are not sent to numbers of this country")
        return Verdict(country, None)

    def check_number(self, phone: str, *, field: str = "phone") -> None:
        """Raise 400 ``unsupported_phone`` naming ``field`` unless SMS may go to ``phone``.
        Call it outside any transaction: it may ask Twilio Lookup."""
        reason = self.verdict(phone).reason
        if reason is None and self._lookup is not None:
            line_type = self._line_type(phone)
            if line_type is not None and line_type not in ACCEPTED_LINE_TYPES:
                reason = "this number cannot receive SMS codes (not a mobile line); give a mobile number"
        if reason is not None:
            raise errors.UnsupportedPhone(
                f"{field} cannot receive SMS codes: mobile numbers only, in "
                + ", ".join(sorted(self._countries)),
                errors=[{"field": field, "message": reason}],
            )

    def _line_type(self, phone: str) -> str | None:
        """Twilio's line type (cached 30 days), or None when Lookup cannot answer."""
        with self._store.transaction() as tx:
            cached = tx.scalar("phone_line_type_cached", phone=phone)
        if cached is not None:
            self._metrics.sms_lookups.labels("cached").inc()
            return cached
        assert self._lookup is not None
        try:
            line_type = self._lookup.line_type(phone)
        except errors.DeliveryError as exc:
            _log.warning("Twilio Lookup failed, the offline check stands: %s", exc.detail)
            self._metrics.sms_lookups.labels("error").inc()
            return None
        with self._store.transaction() as tx:
            tx.run("remember_phone_line_type", phone=phone, line_type=line_type)
        self._metrics.sms_lookups.labels("accepted" if line_type in ACCEPTED_LINE_TYPES else "refused").inc()
        return line_type

    # ------------------------------------------------------------------ caps
    def permit(self, tx: Tx, *, to: str, purpose: str, account_id: str | None = None,
               ip: str | None = None) -> bool:
        """Whether an SMS to ``to`` may go out now; if so it is counted (in ``tx``, so it only
        counts when the caller commits). Past a cap: False, a metric, and at most once an hour
        per cap the ``sms.cap_reached`` webhook. Call it as the last step of ``tx``."""
        verdict = self.verdict(to)
        if verdict.reason is not None:
            self._count(purpose, "refused_number")
            return False
        client, network = network_keys(ip)
        keys = {"total": "*", "country": verdict.country, "network": network, "client": client,
                "account": account_id, "number": to}
        caps = [cap for cap in CAPS if keys[cap] is not None]
        capped = tx.scalar("sms_take", scopes=[f"{cap}:{keys[cap]}" for cap in caps],
                           caps=[self._limits[cap] for cap in caps], shards=[self._shards[cap] for cap in caps],
                           count=True,
                           purpose=purpose, phone=to, country=verdict.country, account_id=account_id,
                           client_key=client, network_key=network)
        if capped:
            self._capped(tx, caps[capped - 1], purpose, verdict.country)
            return False
        self._count(purpose, "sent")
        return True

    def _count(self, purpose: str, decision: str) -> None:
        """``authsvc_sms_total``, except for purposes anyone can ask for with an email (reset):
        those count only requests (:meth:`requested`), or the counter would tell which emails
        are registered."""
        if purpose not in ANONYMOUS_SMS_PURPOSES:
            self._metrics.sms.labels(purpose, decision).inc()

    def requested(self, purpose: str) -> None:
        """One request of an anonymous purpose, whatever became of it (registered email or not)."""
        self._metrics.sms.labels(purpose, "requested").inc()

    def _capped(self, tx: Tx, cap: str, purpose: str, country: str) -> None:
        self._count(purpose, f"cap_{cap}")
        alert = f"country:{country}" if cap == "country" else cap
        if tx.one("sms_cap_alert_due", cap=alert) is not None:
            _log.warning("SMS cap reached: %s (%s per hour)", alert, self._limits[cap])
            data: dict[str, Any] = {"cap": cap, "limit": self._limits[cap], "window_seconds": self._window,
                                    "purpose": purpose}
            if cap == "country":
                data["country"] = country
            self._outbox.event(tx, "sms.cap_reached", data)

    def decoy(self, tx: Tx) -> None:
        """The same kind of locking and counting work as :meth:`permit` (the global cap's scope
        and five others), recording nothing: for answers that must not tell (by their timing)
        whether an SMS went out, e.g. a reset for an unknown email."""
        scopes = [f"{cap}:" + ("*" if cap == "total" else "") for cap in CAPS]
        tx.scalar("sms_take", scopes=scopes, caps=[self._limits[cap] for cap in CAPS],
                  shards=[self._shards[cap] for cap in CAPS], count=False,
                  purpose="decoy", phone="", country="", account_id=None, client_key=None, network_key=None)

    def send(self, tx: Tx, *, to: str, body: str, purpose: str, account_id: str | None = None,
             ip: str | None = None) -> bool:
        """:meth:`permit`, then the SMS into the outbox (same transaction). True when queued."""
        if not self.permit(tx, to=to, purpose=purpose, account_id=account_id, ip=ip):
            return False
        self._outbox.sms(tx, to, body)
        return True
