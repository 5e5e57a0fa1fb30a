"""Prometheus metrics: requests, latencies, logins by outcome, rate-limit hits, outbox depth.

Rules (README, "Configuration", ``AUTHSVC_METRICS_BIND``; "Logs"):
- metrics are served only on their own listener (``AUTHSVC_METRICS_BIND``, see
  :mod:`authsvc.metrics_server`), never by the public app;
- they cover the whole instance: under gunicorn every worker writes its samples to a shared
  directory (prometheus_client's multiprocess mode) and the master serves their sum;
- no label tells an unknown email from a wrong password (both are ``invalid_credentials``).

Known label values are exposed at 0 from the start (``LOGIN_OUTCOMES`` and the tuples beside
it; rate-limited routes through :meth:`Metrics.known_routes`).

To add a metric, add an attribute in ``__init__`` with ``registry=self.registry``. A Gauge must
say how workers' values combine (``multiprocess_mode="livesum"``, ``"max"``, ...); a value that
is the same for every worker (like the outbox depth) is better computed at scrape time by a
collector passed to :meth:`Metrics.scrape_collectors`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from .services.platform.hashing import Standing
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself

# The label values each labelled counter is known to take. Their series are exposed at 0 from
# the start (Prometheus practice: a rate() or an alert on a series that appears only with its
# first event misses that event); values not listed still appear on first use.
LOGIN_OUTCOMES = {
    "password": ("ok", "invalid_credentials", "locked"),
    "second_factor": ("ok", "invalid_factor", "invalid_token", "rate_limited", "account_frozen",
                      "password_change_required"),
}
THROTTLE_DECISIONS = (("allowed", "none"), ("throttled", "client"), ("throttled", "network"),
                      ("throttled", "email"), ("throttled", "device"), ("throttled", "factor_lock"),
                      ("shed", "busy"))
STANDINGS = ("known", "returning", "stranger", "failing")  # a request's class at the hash gate
SMS_PURPOSES = ("registration", "login", "reset", "phone_change")
SMS_DECISIONS = ("sent", "refused_number", "cap_total", "cap_country", "cap_network", "cap_client",
                 "cap_account", "cap_number")
# Purposes anyone can ask for with just an email (a password reset): a counter that moved only
# for registered emails would tell who is registered, so these count requests (decision
# "requested", registered or not) and never whether an SMS went out.
ANONYMOUS_SMS_PURPOSES = ("reset",)


def multiprocess_dir() -> str | None:
    """The directory workers write their samples to, when multiprocess mode is on."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


class OutboxDepthCollector(Collector):
    """``authsvc_outbox_depth{state}``, read from the database at scrape time (one value for the
    whole instance, whichever process serves the scrape)."""

    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("authsvc_outbox_depth", "Undelivered outbox messages", labels=["state"])
        try:
            for state, n in sorted(self._depth().items()):
                family.add_metric([state], float(n))
        except Exception:  # noqa: BLE001 - metrics must render while the database is down
            pass
        yield family


class Metrics:
    def __init__(self, outbox_depth: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "authsvc_http_requests", "HTTP requests", ["method", "endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "authsvc_http_request_seconds", "HTTP request latency", ["method", "endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # outcome: ok, invalid_credentials (unknown email and wrong password alike), locked, ...
        self.logins = Counter("authsvc_logins", "Login steps by outcome", ["step", "outcome"], registry=self.registry)
        self.rate_limited = Counter("authsvc_rate_limited", "Requests refused by a rate limit", ["endpoint"],
                                    registry=self.registry)
        self.hash_shed = Counter("authsvc_password_hash_shed", "Requests answered 503 busy because password "
                                 "hashing was saturated", ["device"], registry=self.registry)
        self.sms = Counter(
            "authsvc_sms", "SMS the service was asked to send, by purpose and decision (sent, or why not)",
            ["purpose", "decision"], registry=self.registry,
        )
        self.sms_lookups = Counter("authsvc_sms_lookups", "Twilio Lookup line-type checks by result", ["result"],
                                   registry=self.registry)
        self.client_address_problems = Counter(
            "authsvc_client_address_problems",
            "Requests from a trusted proxy whose client address was unparseable or missing", ["reason"],
            registry=self.registry,
        )
        # Every throttling decision on the login and registration paths: decision
        # allowed|throttled|shed, reason the budget that decided (client, network, email, device,
        # factor_lock, busy; none when allowed), standing the request's class at the hash gate
        # (known, returning, stranger, failing). No label separates an unknown email from a wrong
        # password.
        self.throttle = Counter("authsvc_throttle_decisions", "Login and registration throttling decisions",
                                ["decision", "reason", "standing"], registry=self.registry)
        self.throttle_fallback = Counter(
            "authsvc_throttle_store_fallback", "Throttle counter operations answered from process memory "
            "because Redis failed", registry=self.registry)
        # Requests the HTTP front answered itself before the app saw them (authsvc/workers.py):
        # reason timeout (the read deadline passed), malformed (framing), too_large, head_too_large.
        self.unread_requests = Counter(
            "authsvc_http_unread_requests", "Requests refused while being read, before the app saw them",
            ["reason"], registry=self.registry)
        self._outbox_depth = outbox_depth
        for step, outcomes in LOGIN_OUTCOMES.items():
            for outcome in outcomes:
                self.logins.labels(step, outcome)
        for decision, reason in THROTTLE_DECISIONS:
            for standing in STANDINGS:
                self.throttle.labels(decision, reason, standing)
        for device in ("known", "unknown"):
            self.hash_shed.labels(device)
        for purpose in SMS_PURPOSES:
            for decision in ("requested",) if purpose in ANONYMOUS_SMS_PURPOSES else SMS_DECISIONS:
                self.sms.labels(purpose, decision)
        for result in ("accepted", "refused", "cached", "error"):
            self.sms_lookups.labels(result)
        for reason in ("unparseable", "missing"):
            self.client_address_problems.labels(reason)

    def known_routes(self, limited: Iterable[str]) -> None:
        """The rate-limited routes (URL rules), so ``authsvc_rate_limited_total`` shows each at 0."""
        for route in limited:
            self.rate_limited.labels(route)

    def shed(self, standing: Standing) -> None:
        """A request answered 503 busy because password hashing was saturated."""
        self.hash_shed.labels("known" if standing.rank == 0 else "unknown").inc()
        self.throttle.labels("shed", "busy", standing.name).inc()

    def watch_outbox(self, outbox_depth: Callable[[], dict[str, int]]) -> None:
        self._outbox_depth = outbox_depth

    def scrape_collectors(self) -> list[Collector]:
        """Collectors computed at scrape time rather than kept per process."""
        return [OutboxDepthCollector(self._outbox_depth)] if self._outbox_depth is not None else []

    def render(self) -> tuple[bytes, str]:
        """This process's metrics, or every worker's when multiprocess mode is on."""
        return render(self.scrape_collectors(), local=self.registry)


def render(extra: Iterable[Collector] = (), *, local: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """Prometheus text: the sum over every process writing to the multiprocess directory when
    there is one (``local`` is then ignored: its samples are in the directory), else ``local``."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=path)
    elif local is not None:
        registry.register(_Delegate(local))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self):  # type: ignore[no-untyped-def]
        return self._registry.collect()
