"""``create_app(settings)``: builds every part of the service and wires them together."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request

from . import api, errors
from .adapters.dev_outbox import DevOutbox
from .adapters.email import build_email_sender
from .adapters.sms import build_line_type_lookup, build_sms_sender
from .adapters.webhooks import WebhookSender
from .api.body import MAX_BODY
from .api.context import client_ip
from .api.limits import ENDPOINT_LIMITS, install as install_limits
from .config import Settings
from .container import Container
from .logs import install_request_log
from .metrics import Metrics
from .security import passwords
from .security.crypto import Cipher
from .security.passwords import PasswordHasher, PasswordPolicy
from .security.webauthn import WebAuthn
from .services.core.clients import ClientService
from .services.core.devices import KnownDevices
from .services.core.sessions import Sessions
from .services.core.sms_policy import SmsPolicy
from .services.core.throttle import Throttle
from .services.factors.second_factor import SecondFactors
from .services.flows.accounts import AccountService
from .services.flows.contact_change import ContactChangeService
from .services.flows.exemptions import PaymentExemptions, TrustedPayees
from .services.flows.factor_management import FactorService
from .services.flows.login import LoginService
from .services.flows.operators import AccountAdmin, Incidents
from .services.flows.passkey import PasskeyLogin
from .services.flows.password_change import PasswordChangeService
from .services.flows.password_reset import PasswordResetService
from .services.flows.registration import RegistrationService
from .services.flows.reports import ReportService
from .services.flows.step_up import StepUpService
from .services.platform.audit import AuditChain
from .services.platform.audit_log import AuditLog
from .services.platform.hashing import GatedHasher, HashGate
from .services.platform.health import Health
from .services.platform.keys import KeyService
from .services.platform.outbox import Outbox
from .services.platform.reencrypt import Reencryption
from .store import Store
from .store.counters import build_counters


def build_container(settings: Settings) -> Container:
    if not settings.database_url:
        raise errors.ConfigError("no database URL (AUTHSVC_DATABASE_URL, or --dev for the embedded one)")
    store = Store(settings.database_url, **settings.store_options())
    cipher = Cipher(settings.encryption_keys)
    audit_chain = AuditChain(cipher).install(store)
    try:
        audit_chain.ensure(store)  # the chain key, made once per database, kept encrypted
    except errors.StoreError:
        pass  # a database that is down at start: the first audited change reports it
    metrics = Metrics()
    gate, one_time = settings.hash_gate, settings.one_time  # the rules' numbers in force (policy.py)
    hasher = GatedHasher(
        PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        ),
        HashGate(
            settings.hash_slots, gate.queue_budget, gate.known_budget,
            failing_budget=gate.failing_budget, on_shed=metrics.shed,
        ),
    )
    policy = PasswordPolicy()
    webhooks = (
        WebhookSender(settings.webhook_url, settings.webhook_secret)
        if settings.webhook_url and settings.webhook_secret
        else None
    )
    sms_sender, email = build_sms_sender(settings), build_email_sender(settings)
    dev_outbox = DevOutbox() if settings.dev else None  # the example page reads the console's messages
    if dev_outbox is not None:
        if settings.sms_provider == "console":
            sms_sender = dev_outbox.sms(sms_sender)
        if not settings.smtp_url:
            email = dev_outbox.email(email)
    outbox = Outbox(store, cipher, sms=sms_sender, email=email, webhooks=webhooks)
    metrics.watch_outbox(outbox.depth)
    sms = SmsPolicy(caps=settings.sms_caps, countries=settings.sms_countries, store=store, outbox=outbox,
                    metrics=metrics,
                    lookup=build_line_type_lookup(settings))
    throttle = Throttle(
        rules=settings.throttle_rules, prefix=settings.rate_limit_prefix, enabled=settings.rate_limits_enabled,
        counters=build_counters(settings.redis_url, metrics.throttle_fallback.inc),
        metrics=metrics, store=store, outbox=outbox,
    )
    keys = KeyService(store, cipher, settings)
    second = SecondFactors(
        cipher=cipher,
        webauthn=WebAuthn(rp_id=settings.rp_id, rp_name=settings.rp_name, origins=settings.origins),
        outbox=outbox,
    )
    devices = KnownDevices(token_ttl=settings.device_token_ttl)
    sessions = Sessions(settings=settings, store=store, keys=keys, outbox=outbox, devices=devices)
    reports = ReportService(report_url=settings.report_url, store=store, sessions=sessions, devices=devices,
                            outbox=outbox)
    sessions.on_new_device = reports.new_device
    password_change = PasswordChangeService(
        store=store, hasher=hasher, policy=policy, sessions=sessions, outbox=outbox
    )
    step_up = StepUpService(settings=settings, store=store, factors=second, outbox=outbox, metrics=metrics,
                            devices=devices, exemptions=PaymentExemptions(settings=settings, throttle=throttle),
                            reports=reports)
    factors = FactorService(
        totp_issuer=settings.rp_name, store=store, cipher=cipher, factors=second, step_up=step_up, outbox=outbox
    )
    login = LoginService(
        one_time=one_time, store=store, cipher=cipher, hasher=hasher, factors=second,
        sessions=sessions, reports=reports, password_change=password_change, outbox=outbox, metrics=metrics,
        sms=sms,
        devices=devices, throttle=throttle,
    )
    return Container(
        settings=settings,
        store=store,
        outbox=outbox,
        keys=keys,
        registration=RegistrationService(
            one_time=one_time, default_locale=settings.default_locale, store=store, cipher=cipher, hasher=hasher,
            policy=policy, outbox=outbox, sms=sms,
            devices=devices, throttle=throttle,
        ),
        login=login,
        passkey=PasskeyLogin(store=store, factors=second, login=login),
        sessions=sessions,
        factors=factors,
        step_up=step_up,
        trusted_payees=TrustedPayees(store=store, step_up=step_up),
        accounts=AccountService(store, factors),
        clients=ClientService(store),
        reports=reports,
        admin=AccountAdmin(store=store, sessions=sessions, outbox=outbox, devices=devices),
        incidents=Incidents(store=store, sessions=sessions, outbox=outbox, devices=devices),
        audit_log=AuditLog(store, audit_chain, outbox),
        password_change=password_change,
        password_reset=PasswordResetService(
            one_time=one_time, store=store, cipher=cipher, hasher=hasher, policy=policy, factors=second,
            sessions=sessions, outbox=outbox, sms=sms, devices=devices,
        ),
        contact_change=ContactChangeService(
            one_time=one_time, store=store, cipher=cipher, step_up=step_up, reports=reports, outbox=outbox,
            sms=sms,
        ),
        health=Health(store, settings.migrations_dir),
        metrics=metrics,
        hasher=hasher,
        sms=sms,
        reencryption=Reencryption(store=store, cipher=cipher, chain=audit_chain),
        extra={"dev_outbox": dev_outbox} if dev_outbox is not None else {},
        devices=devices,
        throttle=throttle,
    )


class _Flask(Flask):
    """Flask, with :meth:`ensure_sync` remembered per function: Flask asks of every hook and
    view on every request whether it is a coroutine function (five ``inspect`` calls per
    request here); ours never change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            sync = self._sync[func] = super().ensure_sync(func)
            return sync
        except TypeError:  # not hashable: not remembered
            return super().ensure_sync(func)


def create_app(settings: Settings, *, start_outbox: bool = True) -> Flask:
    app = _Flask("authsvc")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    # First, so that every later hook (rate limits included) runs with a request id.
    install_request_log(app, client_ip)
    container = build_container(settings)
    passwords.common_password_count()  # load the breached-password list once, before serving
    # Make the dummy hash now, so the first unknown email costs what a registered one does
    # (on a hashing thread, like every request's hash: see services/platform/hashing.py).
    container.hasher.dummy_verify("warm-up", known=True)
    try:
        # Made now rather than inside the first login's transaction, which would need a second
        # pool connection for it. A database that is down at start is not fatal: /readyz says so
        # and the key is made on first use.
        container.keys.ensure_signing_key()
    except errors.StoreError:
        pass
    app.extensions["authsvc"] = container
    api.register(app)
    if settings.dev:
        from .api import dev_example

        dev_example.register(app)  # /example/: the example front end and its dev-only helpers
    container.limiter = install_limits(app, settings)
    # Routes that answer 429: the per-IP limits, and the sign-in steps behind the login throttle.
    limited = {*ENDPOINT_LIMITS, "login.login", "passkey.sign_in"}
    container.metrics.known_routes(sorted({r.rule for r in app.url_map.iter_rules() if r.endpoint in limited}))
    _instrument(app, container.metrics)
    if start_outbox and settings.deliver_inline:
        container.outbox.start()
        container.audit_log.start(settings.audit_checkpoint_interval)
    return app


def _instrument(app: Flask, metrics: Metrics) -> None:
    # Each request counts into a few labelled series: their children are looked up here once
    # per label set, not through prometheus' locked lookup on every request.
    counted: dict[tuple[str, str, int], Any] = {}
    timed: dict[tuple[str, str], Any] = {}

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):  # type: ignore[no-untyped-def]
        req, gg = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        rule, method, status = req.url_rule, req.method, response.status_code
        endpoint = rule.rule if rule else "unmatched"
        key = (method, endpoint, status)
        if (count := counted.get(key)) is None:
            count = counted[key] = metrics.requests.labels(method, endpoint, str(status))
        count.inc()
        started = gg.get("started")
        if started is not None:
            if (latency := timed.get(key[:2])) is None:
                latency = timed[key[:2]] = metrics.latency.labels(method, endpoint)
            latency.observe(time.perf_counter() - started)
        if status == 429:
            metrics.rate_limited.labels(endpoint).inc()
        headers = response.headers
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
