"""Every number of every rule, in one place.

Each frozen dataclass below is one rule's numbers, with the defaults the service ships with.
A field an operator may change is marked ``AUTHSVC_...``: its default is that variable's default
(``authsvc/config.py`` takes it from here), and the value in force comes from the settings
(``Settings.one_time``, ``.throttle_rules``, ``.sms_caps``, ``.hash_gate``, ``.lifetimes`` build
the slices ``app.build_container`` hands each service). Every other field is fixed: the module
constant (``ONE_TIME``, ``FACTOR_LOCK``, ...) is what the services use.

Nothing here reads the environment or imports from the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class OneTime:
    """Codes and one-time tokens: how long each lives and how many wrong answers it takes.

    A registration, password reset, contact change, step-up challenge or sign-in's MFA token
    dies at its ``max_attempts``-th wrong code (consumed in the database, in the same statement
    that counts the failure)."""

    max_attempts: int = 5
    code_ttl: int = 10 * MINUTE  # an SMS or email code (reset, contact change; the minutes messages name)
    registration_ttl: int = 10 * MINUTE  # a registration and the codes it carries
    mfa_token_ttl: int = 5 * MINUTE  # a sign-in's second step (mfa_token)
    enrollment_token_ttl: int = 15 * MINUTE  # the grant to enrol a first factor
    step_up_ttl: int = 5 * MINUTE  # a step-up challenge
    login_pass_ttl: int = DAY  # a sign-in pass (a known device's way past the account lock)
    login_pass_max_attempts: int = 5  # wrong passwords with a pass before it dies
    factor_pending_ttl: int = 10 * MINUTE  # a TOTP factor waiting for its first code
    factor_challenge_ttl: int = 5 * MINUTE  # a WebAuthn registration challenge
    passkey_challenge_ttl: int = 5 * MINUTE  # a passkey sign-in challenge
    password_change_token_ttl: int = 15 * MINUTE  # a forced password change after sign-in
    report_token_ttl: int = 7 * DAY  # a "this wasn't me" link
    recovery_codes: int = 10  # recovery codes per set


@dataclass(frozen=True)
class FactorLock:
    """Wrong second-factor answers: ``failures`` within ``window`` seconds from unknown devices
    lock the account for unknown devices, ``first_lock`` seconds doubled per lock since the last
    success (at most ``max_doublings`` times), capped at ``max_lock``. A known device (or a
    step-up session) reaching ``failures`` in the window waits instead, never locking its owner."""

    window: int = 15 * MINUTE
    failures: int = 10
    first_lock: int = MINUTE
    max_doublings: int = 10
    max_lock: int = HOUR


@dataclass(frozen=True)
class ThrottleRules:
    """Failure budgets against the list attack (``services/core/throttle.py``)."""

    window: int = 15 * MINUTE  # AUTHSVC_THROTTLE_WINDOW
    client_failures: int = 20  # AUTHSVC_THROTTLE_CLIENT_FAILURES (IPv4 address / IPv6 /64)
    network_failures: int = 100  # AUTHSVC_THROTTLE_NETWORK_FAILURES (IPv4 /24 / IPv6 /48)
    email_failures: int = 10  # AUTHSVC_THROTTLE_EMAIL_FAILURES (as typed, registered or not)
    device_failures: int = 10  # AUTHSVC_THROTTLE_DEVICE_FAILURES (a known device's token)
    first_wait: int = MINUTE  # past a budget; each further failure doubles it ...
    email_max_wait: int = HOUR  # ... up to this for an email or a device (a window for the others)
    attack_failures_per_minute: int = 300  # AUTHSVC_ATTACK_FAILURES_PER_MINUTE: attack.started
    attack_divisor: int = 4  # during an attack client and network budgets are this much smaller
    attack_end_fraction: float = 0.5  # attack.ended once two minutes are below this share of the level
    attack_check_every: float = 5.0  # seconds between checks whether an attack ended
    attack_max: int = 7 * DAY  # an attack nobody ends is forgotten after this
    inflight_ttl: int = 2 * MINUTE  # an in-flight count outlives a worker that died holding it
    concurrent_wait: int = 2  # Retry-After while attempts in flight already fill a budget
    ticket_slack: float = 0.5  # a returning stranger may come back this early before its Retry-After
    ticket_ttl: int = MINUTE  # after its Retry-After, a returning stranger keeps its place this long
    # A stranger's score: its client's recent failures, plus its network's and email's divided
    # by these (a network is shared by many people, a leaked email is tried by attackers).
    client_weight: int = 1
    network_weight: int = 5
    email_weight: int = 3


@dataclass(frozen=True)
class SmsCaps:
    """SMS sent per ``window`` (``services/core/sms_policy.py``; registration and reset add theirs)."""

    window: int = HOUR
    total: int = 1000  # AUTHSVC_SMS_HOURLY_CAP
    country: int = 1000  # AUTHSVC_SMS_COUNTRY_HOURLY_CAP (default: the total cap)
    number: int = 5  # AUTHSVC_SMS_NUMBER_HOURLY_CAP
    account: int = 10  # AUTHSVC_SMS_ACCOUNT_HOURLY_CAP
    client: int = 20  # AUTHSVC_SMS_CLIENT_HOURLY_CAP
    network: int = 100  # AUTHSVC_SMS_NETWORK_HOURLY_CAP
    registration_per_phone: int = 5  # registration codes to one phone per window
    reset_per_account: int = 3  # reset codes per account and phone: from known devices, and from the rest
    reset_per_client: int = 2  # of the anonymous ones, per client: one stranger cannot take them all


@dataclass(frozen=True)
class HashGate:
    """Bounded password hashing (``services/platform/hashing.py``): argon2 computations at once per
    worker (0: the CPUs the process may use) and how long a request may wait for one before
    503 ``busy``, in seconds."""

    concurrency: int = 0  # AUTHSVC_HASH_CONCURRENCY
    queue_budget: float = 3.0  # AUTHSVC_HASH_QUEUE_BUDGET_MS: a stranger (unknown device)
    known_budget: float = 5.0  # AUTHSVC_HASH_KNOWN_BUDGET_MS: a known device
    failing_budget: float = 0.25  # AUTHSVC_HASH_FAILING_BUDGET_MS: failing traffic during an attack


@dataclass(frozen=True)
class Lifetimes:
    """Sessions, tokens and devices."""

    access_token_ttl: int = 10 * MINUTE  # AUTHSVC_ACCESS_TOKEN_TTL
    session_max_age: int = 30 * DAY  # AUTHSVC_SESSION_MAX_AGE: from sign-in, however refreshed
    session_idle_timeout: int = 7 * DAY  # AUTHSVC_SESSION_IDLE_TIMEOUT: from last use
    payment_max_session_age: int = DAY  # AUTHSVC_PAYMENT_MAX_SESSION_AGE: payment step-up refuses older
    device_token_ttl: int = 365 * DAY  # a known device's token, from its last use


@dataclass(frozen=True)
class Exemptions:
    """Payment exemptions (``services/flows/exemptions.py``)."""

    cooldown: int = 7 * DAY  # AUTHSVC_EXEMPTION_COOLDOWN: after a new known device, reset, unfreeze
    recurring_min_interval: int = DAY  # one exempt payment per recurring series per this
    max_trusted_payees: int = 100


ONE_TIME = OneTime()
FACTOR_LOCK = FactorLock()
THROTTLE = ThrottleRules()
SMS = SmsCaps()
HASH_GATE = HashGate()
LIFETIMES = Lifetimes()
EXEMPTIONS = Exemptions()
