"""Per-IP rate limits (flask-limiter), shared through Redis when AUTHSVC_REDIS_URL is set.

Keyed per client as the failure budgets are: the IPv4 address, or the IPv6 /64 (a subscriber
gets a whole /64 and may use any address in it).

These are the coarse, per-client-IP limits on every request. The password step has none:
there only failures count (``services.core.throttle``: per client, network, email and known device),
so many honest users behind one carrier NAT keep signing in; per-account throttling of
second-factor failures lives in the services too, where it holds however many IPs an attacker
uses.
"""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter

from ..config import Settings
from .context import client_key

# endpoint -> limits per client IP
ENDPOINT_LIMITS: dict[str, str] = {
    "registration.start": "5/minute;30/hour",
    "registration.verify": "10/minute",
    "login.mfa": "120/minute",  # needs an mfa_token (a correct password): a flood guard only
    # passkey sign-in: each options call stores a challenge (kept up to an hour); a page with
    # conditional mediation asks once per load, so this is far above honest use
    "passkey.options": "30/minute;600/hour",
    "passkey.sign_in": "30/minute",
    "login.refresh": "60/minute",
    "step_up.create": "30/minute",
    "step_up.verify": "20/minute",
    "factors.confirm_totp": "20/minute",
    "login.password_change": "10/minute",
    "login.report": "10/minute",
    "report_page.show": "30/minute",
    "report_page.confirm": "10/minute",
    "recovery.start_reset": "5/minute;30/hour",
    "recovery.reset_sms": "10/minute",
    "recovery.reset_factor": "10/minute",
    "recovery.reset_complete": "10/minute",
    "recovery.verify_change": "10/minute",
}


REDIS_TIMEOUT = 0.25


def _redis_options() -> dict:
    """Fail within REDIS_TIMEOUT, without the client's retries (as store/counters.py does)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT, "retry": Retry(NoBackoff(), 0)}


def install(app: Flask, settings: Settings) -> Limiter:
    options: dict = {}
    if settings.redis_url:
        # a Redis that stops answering costs a request 0.25 s once, then the limits count in
        # this process's memory (never open) until Redis answers again
        options = _redis_options()
        if settings.redis_url.startswith("redis+sentinel:"):
            # shared counts are read from the master: a lagging replica would under-count
            options = {**options, "use_replicas": False, "sentinel_kwargs": _redis_options()}
    limiter = Limiter(
        key_func=client_key,  # IPv4 address or IPv6 /64
        storage_uri=settings.redis_url or "memory://",
        storage_options=options,
        strategy="moving-window",
        headers_enabled=False,  # Retry-After is set on 429 answers only (api.problems)
        key_prefix=settings.rate_limit_prefix,
        enabled=settings.rate_limits_enabled,
        swallow_errors=False,
        in_memory_fallback_enabled=True,  # Redis down: per-process limits, as the throttle counters do
    )
    limiter.init_app(app)
    # Only the endpoints in the table are limited, each by its decorator, which checks its own
    # limits when the view is called. flask-limiter also checks every request in a
    # before_request hook (for default and application limits, of which there are none);
    # resolving the empty limits of an unlimited endpoint there was ~11% of a worker's CPU for
    # a cheap request such as an introspection (py-spy, benchmarks/perf.py), so the hook goes.
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:  # (not installed when limits are off)
        hooks.remove(limiter._check_request_limit)
    for endpoint, limit in ENDPOINT_LIMITS.items():
        if endpoint in app.view_functions:
            # (flask-limiter types the wrapped view as possibly async; ours are not)
            app.view_functions[endpoint] = limiter.limit(limit)(app.view_functions[endpoint])  # type: ignore[assignment]
    return limiter
