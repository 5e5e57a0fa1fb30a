"""Failure budgets against the list attack (credential stuffing).

Rules (README, "Holding against the list attack (credential stuffing)"):
- only failures count (a wrong password, an unknown email: the same thing here), so many honest
  users behind one carrier NAT keep signing in;
- a request from an unknown device is charged to its client (an IPv4 address, an IPv6 /64),
  its network (IPv4 /24, IPv6 /48) and the email as typed (normalised), registered or not;
  a request from a known device is charged only to that device's token, so throttling caused
  by unknown devices never slows a known device;
- past a budget (``limit`` failures in ``window`` seconds) the subject waits: 429 with
  ``Retry-After``, decided before any password hashing; no more attempts of a subject run at
  once (in one process or across replicas) than the failures its budget still has room for,
  so attempts at the same moment cannot overrun it; each further failure after a wait
  doubles the next wait (from ``base_delay``, capped at ``max_delay``: 1 hour for an email);
  the escalation fades after a quiet period, and a successful login clears the email's;
- an email entering its first wait of an episode is reported once (``Blocked.new_episode``), so
  a real owner can be notified once per episode;
- counters live in Redis when configured (shared by every worker and instance), else in
  memory; a Redis failure falls back to memory (logged, counted), never to "allow";
- the failure rate of the whole service (wrong passwords per minute; refusals before hashing
  do not count, so one address firing cheap refused requests cannot start an attack) starts and
  ends an "attack": ``attack.started`` / ``attack.ended`` webhooks, once each, through the
  outbox; while it lasts, client and network budgets for unknown devices are a quarter of
  their size, and traffic whose client, network or email keeps failing is "failing" at the
  hash gate (last, with a short wait: see ``services/platform/hashing.py``);
- strangers are not one class (``admit``): a request from an unknown device stands at the hash
  gate by the recent failures of its client, network and email (fewer first), and one coming
  back after the ``Retry-After`` of a 503 from the same client for the same email stands ahead
  of other strangers. Successes never buy a place: only failures are read.

Counting uses two fixed buckets per window (the previous one weighted by how much of it still
overlaps the sliding window), which keeps each check to one round trip.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from typing import Any

from ... import errors
from ...metrics import Metrics
from ...policy import ThrottleRules
from ...store import Store
from ...store.counters import CounterStore
from ..platform.audit import audit
from ..platform.hashing import KNOWN, Standing, failing, returning, stranger
from ..platform.outbox import Outbox
from . import contacts
from .subjects import Attempt, Blocked, Budget, Subject, client_subjects, device_subject, email_subject

_log = logging.getLogger("authsvc.services.throttle")

class Throttle:
    def __init__(
        self, *, rules: ThrottleRules, prefix: str, enabled: bool, counters: CounterStore, metrics: Metrics,
        store: Store, outbox: Outbox,
    ) -> None:
        self._prefix = f"{prefix}:thr"
        self._rules = rules
        self._counters = counters
        self._metrics = metrics
        self._store = store
        self._outbox = outbox
        self._enabled = enabled
        w, first = rules.window, rules.first_wait
        self._budgets = {
            "client": Budget("client", rules.client_failures, w, first, w),
            "network": Budget("network", rules.network_failures, w, first, w),
            "email": Budget("email", rules.email_failures, w, first, rules.email_max_wait),
            "device": Budget("device", rules.device_failures, w, first, rules.email_max_wait),
        }
        self._weights = {"client": rules.client_weight, "network": rules.network_weight, "email": rules.email_weight}
        self._attack_level = rules.attack_failures_per_minute
        self._attack_checked = 0.0

    @property
    def budgets(self) -> dict[str, Budget]:
        return dict(self._budgets)

    # ------------------------------------------------------------------ keys
    def _k(self, kind: str, subject: Subject, *rest: object) -> str:
        return ":".join([self._prefix, kind, subject.scope, subject.ident, *map(str, rest)])

    # ------------------------------------------------------------------ deciding
    def admit(self, subjects: list[Subject], *, known: bool, reserve: bool = True) -> Attempt:
        """Decide, before any hashing, whether a request may go ahead and where it stands.

        Raises ``RateLimited`` while a subject waits out a budget. Otherwise returns the
        attempt with its standing at the hash gate (``Standing``: known; returning after the
        ``Retry-After`` of a 503; stranger, with the recent failures of its client, network
        and email as its score; failing during an attack when that score shows failures) and,
        with ``reserve``, counted as in flight for every subject: no more attempts run at once
        than the failures a budget has room for (at least one), so attempts at the same time
        cannot all pass a budget that only some of them fit in. The caller ends it with
        ``failed``, ``passed`` or ``shed``.
        """
        if not self._enabled or not subjects:
            return Attempt(subjects, KNOWN if known else stranger(), [], None)
        now = time.time()
        ticket = None if known else self._ticket_key(subjects)
        buckets = {s: int(now // self._budgets[s.scope].window) for s in subjects}
        count_keys = [k for s in subjects for k in (self._k("fail", s, buckets[s]), self._k("fail", s, buckets[s] - 1))]
        level_keys = [self._k("level", s) for s in subjects]
        inflight = [self._k("inflight", s) for s in subjects] if reserve else []
        # One instant: this attempt enters (in flight) while the failures settled so far, the
        # escalation levels and the waits are read, so two attempts never both see room for one.
        # Whether an attack is on is read in the same round trip.
        left, values, running = self._counters.peek(
            [self._k("block", s) for s in subjects] + [self._attack_key],
            count_keys + level_keys + ([ticket] if ticket else []), inflight, self._rules.inflight_ttl)
        wait, reason = 0.0, "none"
        for subject, seconds in zip(subjects, left, strict=False):
            if seconds > wait:
                wait, reason = seconds, subject.scope
        attack = left[-1] > 0
        if attack:
            attack = self._maybe_end_attack()
        seen = {s: values[2 * i] + values[2 * i + 1] * self._overlap(s, now) for i, s in enumerate(subjects)}
        standing = KNOWN if known else self._standing(seen, values[-1] if ticket else 0, now, attack)
        if wait > 0:
            self._release(inflight)
            self._metrics.throttle.labels("throttled", reason, standing.name).inc()
            raise errors.RateLimited(max(1, int(wait + 0.999)), "too many failed sign-ins; try again later")
        if reserve:
            levels = values[2 * len(subjects):3 * len(subjects)]
            for s, n, level in zip(subjects, running, levels, strict=False):
                # Room before this subject's next wait: attempts in flight (here or on another
                # replica) may each turn out a failure, so no more of them run at once. Once
                # its budget is spent, one at a time after each wait (the next failure waits
                # longer), none while a wait is being set.
                room = math.ceil(self._limit(s, attack) - seen[s] - 1e-9)
                if n > (room if room > 0 else (1 if level else 0)):
                    self._release(inflight)
                    self._metrics.throttle.labels("throttled", s.scope, standing.name).inc()
                    raise errors.RateLimited(self._rules.concurrent_wait, "too many failed sign-ins; try again later")
        self._metrics.throttle.labels("allowed", "none", standing.name).inc()
        return Attempt(subjects, standing, inflight, ticket, attack)

    def _release(self, inflight: list[str]) -> None:
        if inflight:
            self._counters.move([], 1, inflight)

    def _standing(self, seen: dict[Subject, float], ticket_not_before: int, now: float, attack: bool) -> Standing:
        # A stranger's score: its client's recent failures, plus its network's and email's weighted
        # down (policy.ThrottleRules). Below 1: no recent failures to speak of; 1 or more during an
        # attack: "failing".
        score = sum(n / self._weights.get(s.scope, 1) for s, n in seen.items())
        client = next((n for s, n in seen.items() if s.scope == "client"), 0.0)
        if ticket_not_before and now * 1000 >= ticket_not_before and client < 1:
            return returning(score)
        if score >= 1 and attack:
            return failing(score)
        return stranger(score)

    def _ticket_key(self, subjects: list[Subject]) -> str | None:
        client = next((s for s in subjects if s.scope == "client"), None)
        email = next((s for s in subjects if s.scope == "email"), None)
        if client is None or email is None:
            return None
        return f"{self._prefix}:ticket:{client.ident}:{email.ident}"

    def _overlap(self, subject: Subject, now: float) -> float:
        window = self._budgets[subject.scope].window
        return 1 - (now - int(now // window) * window) / window

    def _limit(self, subject: Subject, attack: bool) -> int:
        limit = self._budgets[subject.scope].limit
        if attack and subject.scope in ("client", "network"):
            limit = max(1, limit // self._rules.attack_divisor)
        return limit

    def failed(self, attempt: Attempt) -> list[Blocked]:
        """The attempt's password (or email) was wrong: one failure for each subject, counted at
        the same instant as it leaves the in-flight count; those that reached their budget now
        wait. Returns them."""
        if not self._enabled or not attempt.subjects:
            return []
        now = time.time()
        attack = attempt.attack
        buckets = [int(now // self._budgets[s.scope].window) for s in attempt.subjects]
        fail_keys = [self._k("fail", s, b) for s, b in zip(attempt.subjects, buckets, strict=True)]
        # One round trip: the failures and this minute's count towards an attack go up, the
        # in-flight counts down, and the previous windows' failures are read.
        minute_key = self._minute_key(int(now // 60))
        out = self._counters.move(
            fail_keys + [minute_key], 2 * max(b.window for b in self._budgets.values()), attempt.inflight,
            [self._k("fail", s, b - 1) for s, b in zip(attempt.subjects, buckets, strict=True)])
        attempt.inflight = []
        n = len(attempt.subjects)
        currents, this_minute, previous = out[:n], out[n], out[n + 1:]
        blocked = []
        for subject, current, prev in zip(attempt.subjects, currents, previous, strict=False):
            budget = self._budgets[subject.scope]
            if current + prev * self._overlap(subject, now) < self._limit(subject, attack):
                continue
            level = self._counters.incr(self._k("level", subject), budget.max_delay + budget.window)
            seconds = min(budget.max_delay, budget.base_delay * 2 ** min(level - 1, 16))
            self._counters.put(self._k("block", subject), json.dumps(
                {"scope": subject.scope, "label": subject.label, "level": level, "seconds": seconds}
            ), seconds)
            blocked.append(Blocked(subject, seconds, level == 1))
        self._count_for_attack(this_minute)
        return blocked

    def passed(self, attempt: Attempt) -> None:
        """The attempt is no longer in flight: it turned out right, or never got to hashing
        (``failed`` moves a wrong one from in flight to the failures itself)."""
        if self._enabled:
            self._release(attempt.inflight)
        attempt.inflight = []

    def shed(self, attempt: Attempt, retry_after: int) -> None:
        """The attempt was answered 503 busy: it is no longer in flight, and a stranger that
        comes back from the same client for the same email after ``retry_after`` seconds (as a
        person's app does) stands ahead of strangers who did not wait their turn."""
        if not attempt.ticket or not self._enabled:
            self.passed(attempt)
            return
        not_before = int((time.time() + max(0.0, retry_after - self._rules.ticket_slack)) * 1000)
        # one round trip: out of flight, and the ticket
        self._counters.move([], 1, attempt.inflight,
                            put=(attempt.ticket, str(not_before), retry_after + self._rules.ticket_ttl))
        attempt.inflight = []

    def succeeded(self, subjects: list[Subject]) -> None:
        """A successful login: the email's (or the device's) escalation and count start over."""
        keys = []
        now = time.time()
        for s in subjects:
            if s.scope in ("email", "device"):
                bucket = int(now // self._budgets[s.scope].window)
                keys += [self._k("level", s), self._k("fail", s, bucket), self._k("fail", s, bucket - 1)]
        if keys and self._enabled:
            self._counters.delete(keys)

    # ------------------------------------------------------------------ attack detection
    def _minute_key(self, minute: int) -> str:
        return f"{self._prefix}:rate:{minute}"

    @property
    def _attack_key(self) -> str:
        return f"{self._prefix}:attack"

    def _count_for_attack(self, n: int) -> None:
        """``n`` wrong passwords this minute (this one counted): an attack starts at the level."""
        if n >= self._attack_level and self._counters.put_new(
            self._attack_key, json.dumps({"started_at": int(time.time())}), self._rules.attack_max
        ):
            _log.warning("attack started: %d wrong passwords this minute", n)
            self._emit("attack.started", {"failures_per_minute": n, "level": self._attack_level})

    def attack_active(self) -> bool:
        return bool(self._counters.remaining([self._attack_key])[0])

    def _maybe_end_attack(self, *, force: bool = False) -> bool:
        """Ends the attack when the last two minutes were quiet (checked at most every 5 s per
        process unless ``force``); whether an attack is still on."""
        now = time.time()
        if not force and now - self._attack_checked < self._rules.attack_check_every:
            return True
        self._attack_checked = now
        if not self.attack_active():
            return False
        minute = int(now // 60)
        current, previous = self._counters.get_many([self._minute_key(minute), self._minute_key(minute - 1)])
        quiet = self._attack_level * self._rules.attack_end_fraction
        if current < quiet and previous < quiet and self._counters.delete([self._attack_key]):
            _log.warning("attack ended")
            self._emit("attack.ended", {"failures_per_minute": previous, "level": self._attack_level})
            return False
        return True

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        try:
            with self._store.transaction() as tx:
                audit(tx, "system", event, None, **payload)
                self._outbox.event(tx, event, payload)
            self._outbox.kick()
        except Exception:  # noqa: BLE001 - a login must not fail because the webhook could not be queued
            _log.exception("could not queue %s", event)

    # ------------------------------------------------------------------ operators
    def current(self) -> list[dict[str, Any]]:
        """Subjects waiting now, longest wait first."""
        out = []
        for key, value, left in self._counters.scan(f"{self._prefix}:block:"):
            try:
                info = json.loads(value)
            except ValueError:
                continue
            out.append({"key": key.removeprefix(f"{self._prefix}:block:"), "scope": info.get("scope"),
                        "label": info.get("label"), "level": info.get("level"), "seconds_left": int(left + 0.999)})
        return sorted(out, key=lambda r: -r["seconds_left"])

    def lift(self, scope: str, ident: str) -> int:
        """End a subject's wait, escalation and count; how many keys were removed."""
        subject = Subject(scope, ident, "")
        bucket = int(time.time() // self._budgets[scope].window)
        return self._counters.delete([
            self._k("block", subject), self._k("level", subject),
            self._k("fail", subject, bucket), self._k("fail", subject, bucket - 1),
        ])

    def resolve(self, text: str) -> Subject:
        """An operator's ``scope:value``: ``client:IP``, ``network:IP-or-CIDR``, ``email:ADDRESS``
        (or the digest shown by ``current``), ``device:TOKEN_ID``."""
        scope, _, value = text.partition(":")
        value = value.strip()
        if not value:
            raise errors.InvalidRequest("give the subject as scope:value, e.g. client:203.0.113.7")
        if scope == "email":
            if "@" not in value and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
                return Subject("email", value, value)
            try:
                _, normalized = contacts.normalize_email(value)
            except errors.InvalidRequest:
                normalized = None
            return email_subject(normalized, value)
        if scope in ("client", "network"):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise errors.InvalidRequest(f"{value!r} is not an IP address or network") from None
            if net.num_addresses > 1 and scope == "network":
                return Subject("network", str(net), str(net))
            subjects = client_subjects(str(net.network_address))
            return subjects[0] if scope == "client" else subjects[1]
        if scope == "device":
            return device_subject(value)
        raise errors.InvalidRequest(f"unknown scope {scope!r} (client, network, email, device)")

    def operator_lift(self, text: str, *, operator: str, reason: str) -> tuple[Subject, bool]:
        """Lift a subject's wait for an operator, audited with the reason; whether it was waiting."""
        subject = self.resolve(text)
        waiting = self._counters.remaining([self._k("block", subject)])[0] > 0
        self.lift(subject.scope, subject.ident)
        with self._store.transaction() as tx:
            audit(tx, f"operator:{operator}", "throttle.lifted", None, scope=subject.scope, subject=subject.label,
                  was_waiting=waiting, reason=reason)
        return subject, waiting

    def attack_state(self) -> dict[str, Any]:
        minute = int(time.time() // 60)
        current, previous = self._counters.get_many([self._minute_key(minute), self._minute_key(minute - 1)])
        return {"active": self.attack_active(), "this_minute": current, "last_minute": previous,
                "level": self._attack_level}
