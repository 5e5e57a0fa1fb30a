"""Prometheus metrics: requests, latencies, logins by outcome, rate-limit hits, outbox depth."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.outbox = Gauge("authsvc_outbox_depth", "Undelivered outbox messages", ["state"], registry=self.registry)
        self._outbox_depth = outbox_depth

    def watch_outbox(self, outbox_depth: Callable[[], dict[str, int]]) -> None:
        self._outbox_depth = outbox_depth

    def render(self) -> tuple[bytes, str]:
        if self._outbox_depth is not None:
            try:
                for state, n in self._outbox_depth().items():
                    self.outbox.labels(state).set(n)
            except Exception:  # noqa: BLE001 - metrics must render while the database is down
                pass
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
