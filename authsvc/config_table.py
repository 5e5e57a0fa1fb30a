"""The settings table: every ``AUTHSVC_*`` variable, one row each (name, type, default,
minimum, doc), in the order ``config.Settings.from_env`` reads them (and so names problems).

``authsvc/config.py`` reads the environment with it (``config_values.read_all``); the README's
configuration table is written from it (``python -m authsvc.config --markdown``; a test keeps
the README equal to what it writes). The numbers of the rules are ``authsvc/policy.py``'s: a
row's default names the policy field rather than repeating the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .policy import EXEMPTIONS, HASH_GATE, LIFETIMES, SMS, THROTTLE

PREFIX = "AUTHSVC_"
DEV_DATA_DIR = ".authsvc-dev"
DEV_SMS_COUNTRIES = ("JP", "US")  # --dev's default for AUTHSVC_SMS_COUNTRIES
BUILTIN_STEP_UP_ACTIONS = (
    "payment.authorize",
    "factor.add",
    "factor.remove",
    "factor.recovery_codes",
    "contact.change",
    "payee.trust",
)
_ROOT = Path(__file__).resolve().parent.parent  # the source tree (its migrations/)


@dataclass(frozen=True)
class Var:
    """One variable: ``AUTHSVC_<name>``. ``type`` says how it is read: ``int`` (with ``minimum``),
    ``ms`` (integer milliseconds, a field in seconds), ``flag`` (true/false, 1/0, yes/no, on/off),
    ``text``, ``url``, ``secret``, ``path``, ``list`` (comma-separated), ``choice`` (one of
    ``choices``), ``host:port``; a variable with rules of its own has a reader of its name in
    ``config_values.READERS``. ``default`` is the value when unset or empty (``default_from``:
    another variable's raw value); ``shown`` what the README says instead of it. ``field`` is the
    Settings field (the lower-case name when None; "" for none); ``at_most`` another variable
    this one must not exceed."""

    name: str
    type: str
    default: object
    minimum: int | None = None
    doc: str = ""
    shown: str | None = None
    field: str | None = None
    choices: tuple[str, ...] = ()
    at_most: str | None = None
    default_from: str | None = None

    @property
    def setting(self) -> str:
        return self.name.lower() if self.field is None else self.field

    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if self.type in ("int", "ms") and isinstance(value, int):
            if value > 86400 and value % 86400 == 0:
                return f"`{value}` ({value // 86400} days)"
            return f"`{value}` (24 hours)" if value == 86400 else f"`{value}`"
        return "—" if value is None else f"`{value}`"


VARS: tuple[Var, ...] = (
    Var("DATA_DIR", "path", DEV_DATA_DIR,
        shown='`.authsvc-dev`',
        doc="`--dev` only: embedded database and dev secrets."),
    Var("ENCRYPTION_KEY", "secret", None, field="encryption_keys",
        shown='— (dev: random)',
        doc=(
            "**Secret, required.** 32 random bytes, base64; `kid:base64[,kid:base64...]` for rotation (the first "
            "encrypts, all decrypt). Non-random keys are refused."
        )),
    Var("ENCRYPTION_KEY_ID", "text", None, field="encryption_keys",
        shown='the first key listed',
        doc=(
            "Which key of `AUTHSVC_ENCRYPTION_KEY` encrypts (the others only decrypt): a new key rolls out "
            'decrypt-only first, then this names it (README, "A fleet of replicas").'
        )),
    Var("SMS_PROVIDER", "choice", "twilio", choices=("twilio", "console"),
        shown='`twilio` (dev: `console`)',
        doc="`console` is refused outside `--dev`."),
    Var("TWILIO_ACCOUNT_SID", "text", None,
        shown='—',
        doc="Required with `twilio`."),
    Var("TWILIO_FROM", "text", None,
        shown='—',
        doc="Required with `twilio` (sender number)."),
    Var("TWILIO_AUTH_TOKEN", "secret", None,
        shown='—',
        doc="**Secret**, required with `twilio`; 32+ characters, no placeholder."),
    Var("TWILIO_API_BASE", "url", None,
        shown="Twilio's own",
        doc="Points the real Twilio client elsewhere (tests use a local fake)."),
    Var("WEBHOOK_URL", "url", None,
        shown='—',
        doc="Security events are POSTed here, signed."),
    Var("WEBHOOK_SECRET", "secret", None,
        shown='—',
        doc="**Secret**, required with `WEBHOOK_URL`; 32+ characters."),
    Var("SMS_COUNTRIES", "list", None,
        shown='— (dev: `JP,US`)',
        doc=(
            "**Required** in production. ISO 3166 codes SMS may go to (a number's own region: list `GG,JE,IM` beside "
            "`GB` for the Channel Islands and Man). Only mobile numbers are accepted (`FIXED_LINE_OR_MOBILE` too, "
            "e.g. every US number, which cannot be told apart offline); premium-rate, shared-cost, toll-free, pager, "
            "VoIP, fixed-line and unknown types get 400 `unsupported_phone`."
        )),
    Var("TWILIO_LOOKUP", "flag", False,
        shown='`false`',
        doc=(
            "`true`: also check a new number's line type with Twilio Lookup v2 (paid per number; cached 30 days); "
            "only `mobile` passes. When Lookup cannot answer, the offline check stands. Needs the `twilio` provider."
        )),
    Var("REDIS_URL", "url", None,
        shown='— (in-memory)',
        doc=(
            "Shares rate-limit and failure-budget counters between workers/replicas; set it whenever more than one "
            "process serves. `redis://`, `rediss://`, `unix://`, or a Sentinel-watched Redis: "
            "`redis+sentinel://sentinel-a:26379,sentinel-b:26379/SERVICE` (the master is looked up through the "
            "Sentinels, read and written there, and found again after their failover). When Redis fails (0.25 s "
            "timeout, no retries), each process counts in memory (logged, `authsvc_throttle_store_fallback_total`), "
            "rate limits included: weaker, never open, never a 500."
        )),
    Var("DATABASE_URL", "url", None,
        shown='— (dev: embedded)',
        doc="libpq URL. **Required** in production. Secret (contains the password)."),
    Var("DATABASE_POOLER", "choice", "none", choices=("none", "pgbouncer"),
        shown='`none`',
        doc=(
            "`pgbouncer`: `AUTHSVC_DATABASE_URL` leads to a transaction-mode pooler (PgBouncer `pool_mode = "
            'transaction`): no server-side prepared statements, LISTEN only on the direct URL (README, "PgBouncer").'
        )),
    Var("DATABASE_DIRECT_URL", "url", None,
        shown='—',
        doc=(
            "A URL that bypasses the pooler (same database and role): the notification listener (one connection per "
            "worker) and `db upgrade` (a session-level lock) use it. Without it, behind a pooler, nothing listens: "
            "client credentials are not cached and signing keys are re-read every second. Secret."
        )),
    Var("SMTP_URL", "url", None,
        shown='— (dev: console)',
        doc="e.g. `smtp://127.0.0.1:1025`. **Required** in production; may carry credentials (secret)."),
    Var("BIND", "host:port", "0.0.0.0:8000",
        shown='`0.0.0.0:8000` (dev: `127.0.0.1:8000`)',
        doc="`HOST:PORT`; `serve --bind` overrides it."),
    Var("PUBLIC_URL", "url", "http://localhost:8000",
        shown='`http://localhost:8000`',
        doc="Must be `https://` in production."),
    Var("ISSUER", "url", None,
        shown='`PUBLIC_URL`',
        doc="JWT `iss`; must be `https://` in production."),
    Var("ORIGINS", "list", None,
        shown='`PUBLIC_URL`',
        doc="Comma-separated origins accepted in WebAuthn ceremonies."),
    Var("RP_ID", "text", None,
        shown='host of `PUBLIC_URL`',
        doc="WebAuthn relying-party id."),
    Var("TRUSTED_PROXIES", "list", None,
        shown='—',
        doc="CIDR list; only from these peers is the proxy header read (right to left, skipping trusted hops)."),
    Var("METRICS_BIND", "host:port", "127.0.0.1:9100",
        shown='`127.0.0.1:9100`',
        doc=(
            "The metrics listener (`GET /metrics`, Prometheus text), never the public port; `off` disables it. Under "
            "gunicorn the master serves the sum over every worker; with `--dev` a thread of the one process. Known "
            "series (every login outcome, throttle decision, SMS decision, rate-limited route) are there at 0 from "
            "the start, so a `rate()` or an alert sees the first event. Bind it to the monitoring network only. If "
            "the address cannot be bound the service logs an error and serves the API without metrics."
        )),
    Var("PROXY_HEADER", "choice", "x-forwarded-for", choices=("x-forwarded-for", "forwarded"),
        shown='`X-Forwarded-For`',
        doc=(
            "Or `Forwarded` (RFC 7239, `for=`): the one header your proxies write (the other is ignored, so a client "
            "cannot spoof through it). Hops may be `ip`, `ip:port`, `[v6]` or `[v6]:port`. The header is split on "
            'every `,` (and `;`) whatever the quotes, so a client\'s `X-Forwarded-For: "x` or `Forwarded: for="x` '
            "cannot swallow the hop its proxy appends. A hop that is still not an address (`for=unknown`, an "
            "obfuscated id, garbage) is logged (at most once a minute per proxy) and counted in "
            '`authsvc_client_address_problems_total{reason="unparseable"}`; the client is then the nearest trusted '
            "hop (the proxy that wrote it): one fixed bucket, never one made from the hop's text (a proxy that sends "
            'no header is counted as `reason="missing"`).'
        )),
    Var("STEP_UP_ACTIONS", "list", None,
        shown='—',
        doc="Extra step-up actions, e.g. `card.add,withdrawal`."),
    Var("WORKER_CLASS", "choice", "gthread", choices=("gthread", "sync"),
        shown='`gthread`',
        doc=(
            "`gthread`: each worker's event loop reads whole requests (`authsvc/workers.py`) and hands complete ones "
            "to its threads (keep-alive connections); `sync`: one request at a time per worker, read with the same "
            "deadline."
        )),
    Var("ARGON2_TIME_COST", "int", 2, minimum=2,
        doc="argon2id passes; the default is also the minimum."),
    Var("ARGON2_MEMORY_COST", "int", 19456, minimum=19456,
        doc="argon2id memory in KiB (19 MiB); the default is also the minimum."),
    Var("ARGON2_PARALLELISM", "int", 1, minimum=1,
        doc="argon2id lanes; the default is also the minimum."),
    Var("ACCESS_TOKEN_TTL", "int", LIFETIMES.access_token_ttl, minimum=60,
        doc="Seconds an access token lives."),
    Var("SESSION_MAX_AGE", "int", LIFETIMES.session_max_age, minimum=300,
        doc="Seconds from sign-in (`auth_time`) after which a session ends, however often it is refreshed."),
    Var("SESSION_IDLE_TIMEOUT", "int", LIFETIMES.session_idle_timeout, minimum=300, at_most="SESSION_MAX_AGE",
        doc="Seconds without use (bearer request or refresh) after which a session ends; at most `SESSION_MAX_AGE`."),
    Var("PAYMENT_MAX_SESSION_AGE", "int", LIFETIMES.payment_max_session_age, minimum=60, at_most="SESSION_MAX_AGE",
        doc=(
            "Step-up for `payment.authorize` refuses a session signed in longer ago (401 `reauthentication_required`,"
            " RFC 9470 `max_age`): the user signs in again. At most `SESSION_MAX_AGE`."
        )),
    Var("WORKERS", "int", 2, minimum=1,
        doc=(
            "gunicorn workers (`gthread`: keep-alive connections). More than one needs `AUTHSVC_REDIS_URL` (or the "
            "opt-in `AUTHSVC_RATE_LIMITS_PER_PROCESS`): `serve` refuses to start otherwise."
        )),
    Var("GRACEFUL_TIMEOUT", "int", 30, minimum=1,
        doc=(
            "Seconds gunicorn gives workers, after the drain, to answer what they accepted and stop the outbox sender"
            ' (README "Faults"); Kubernetes: `terminationGracePeriodSeconds` >= drain + this + 10 = 45.'
        )),
    Var("DRAIN_SECONDS", "int", 5, minimum=0,
        doc=(
            "After SIGTERM, `/readyz` answers 503 at once while the service keeps serving this long, so load "
            "balancers take it out of rotation before the listener closes (rolling restarts lose nothing); then the "
            "graceful stop. A second SIGTERM skips it. Longer than your load balancer's readiness checks take to "
            "notice (Kubernetes example: 2 failures 2 s apart)."
        )),
    Var("THREADS", "int", 8, minimum=1,
        doc="Threads per worker."),
    Var("GATE_THREADS", "int", 16, minimum=1,
        doc=(
            "Threads per worker (gthread) for `POST /v1/login` and `POST /v1/registrations` without an "
            "`X-Device-Token`, which may wait at the hash gate as strangers; everything else, known devices' "
            "sign-ins included, is served by the `AUTHSVC_THREADS` pool and never waits behind them. The gate "
            "orders the strangers it holds; more threads let it see more of a crowd, but every runnable thread "
            "competes for the interpreter (measured: 512 attacker connections, 256 threads left known devices "
            "at p50 4.6 s, 16 at 259 ms)."
        )),
    Var("REQUEST_READ_TIMEOUT", "int", 10, minimum=1,
        doc=(
            "Seconds a client has to send a whole request, head and body, counted from the connection's accept (on a "
            "kept-alive connection, from the request's first byte). Each worker's event loop reads requests itself "
            "and only a complete one reaches a thread, so a slow client holds no thread; past the deadline it is "
            "answered 408 `request_timeout` and closed (closed silently if it sent nothing). At least 1. README "
            '"Security: what a deployment must add in front".'
        )),
    Var("HASH_CONCURRENCY", "int", HASH_GATE.concurrency, minimum=0,
        shown='CPUs',
        doc=(
            "argon2 computations at once per worker, each on a hashing thread of its own (whose 19 MiB working block "
            "stays resident: memory per worker grows by this many blocks); the rest wait in a bounded queue, known "
            "devices first. The default counts the CPUs the process may use (its CPU affinity, capped by the "
            "container's cgroup CPU quota), never the host's cores, and is not divided among workers: requests do not"
            " spread evenly over them, and one worker's wave may use the cores its idle sibling leaves."
        )),
    Var("HASH_QUEUE_BUDGET_MS", "ms", round(HASH_GATE.queue_budget * 1000), minimum=1, field="hash_queue_budget",
        doc=(
            "How long a person's request from an unknown device may wait for hashing: one whose queued work ahead "
            "would take longer gets 503 `busy` with `Retry-After` at once. A wave the cores hash within this is "
            "served."
        )),
    Var("HASH_KNOWN_BUDGET_MS", "ms", round(HASH_GATE.known_budget * 1000), minimum=1, field="hash_known_budget",
        doc=(
            "The same bound for a known device (a live device token of the account), a password change or a completed"
            " reset."
        )),
    Var("HASH_FAILING_BUDGET_MS", "ms", round(HASH_GATE.failing_budget * 1000), minimum=1, field="hash_failing_budget",
        doc=(
            "During an attack, the bound for traffic whose client, network or email keeps failing (it also holds at "
            "most one waiting place per hashing slot)."
        )),
    Var("SMS_HOURLY_CAP", "int", SMS.total, minimum=1,
        doc=(
            "SMS sent for requests (codes; not security notices) in the last hour, in total. Past any cap the API "
            'answers as usual but sends nothing; `authsvc_sms_total{decision="cap_..."}` counts it and the '
            "`sms.cap_reached` webhook fires (at most once an hour per cap). Password resets, which anyone can ask "
            'for with an email, count only as `authsvc_sms_total{purpose="reset",decision="requested"}`, registered '
            "email or not (a counter that moved only for registered emails would tell which are)."
        )),
    Var("SMS_COUNTRY_HOURLY_CAP", "int", None, minimum=1, default_from="SMS_HOURLY_CAP",
        shown='`SMS_HOURLY_CAP`',
        doc="The same, per destination country."),
    Var("SMS_NUMBER_HOURLY_CAP", "int", SMS.number, minimum=1,
        doc="The same per phone number."),
    Var("SMS_ACCOUNT_HOURLY_CAP", "int", SMS.account, minimum=1,
        doc="The same per account."),
    Var("SMS_CLIENT_HOURLY_CAP", "int", SMS.client, minimum=1,
        doc="The same per client (IPv4 address, IPv6 /64). Raise it behind large carrier NATs."),
    Var("SMS_NETWORK_HOURLY_CAP", "int", SMS.network, minimum=1,
        doc="The same per network (IPv4 /24, IPv6 /48). Raise it behind large carrier NATs."),
    Var("AUDIT_CHECKPOINT_SECONDS", "int", 300, minimum=10, field="audit_checkpoint_interval",
        doc="How often the audit chain head is signed and published (log, `audit.checkpoint` webhook)."),
    Var("THROTTLE_WINDOW", "int", THROTTLE.window, minimum=60,
        doc="Seconds over which login failures are counted."),
    Var("THROTTLE_CLIENT_FAILURES", "int", THROTTLE.client_failures, minimum=1,
        doc="Failed logins from unknown devices per client (IPv4 address, IPv6 /64) per window before it waits."),
    Var("THROTTLE_NETWORK_FAILURES", "int", THROTTLE.network_failures, minimum=1,
        doc="The same per network (IPv4 /24, IPv6 /48)."),
    Var("THROTTLE_EMAIL_FAILURES", "int", THROTTLE.email_failures, minimum=1,
        doc="The same per email as typed, registered or not (waits double up to 1 hour)."),
    Var("THROTTLE_DEVICE_FAILURES", "int", THROTTLE.device_failures, minimum=1,
        doc="Failed logins per known device token."),
    Var("ATTACK_FAILURES_PER_MINUTE", "int", THROTTLE.attack_failures_per_minute, minimum=2,
        doc=(
            "Failed or refused logins per minute that start an attack (`attack.started` webhook; client and network "
            "budgets shrink to a quarter); below half for two minutes, `attack.ended`."
        )),
    Var("EXEMPTION_COOLDOWN", "int", EXEMPTIONS.cooldown, minimum=0,
        doc="Exemptions wait this long after a device becomes known, a password reset, a freeze or an unfreeze."),
    Var("RATE_LIMITS_PER_PROCESS", "flag", False,
        shown='`false`',
        doc=(
            "`true` accepts in-memory rate-limit counters in each of several workers (each worker then allows the "
            "full limit)."
        )),
    Var("LOW_VALUE_EXEMPTION", "list", None, field="low_value_exemptions",
        shown='— (off)',
        doc=(
            "Low-value payment exemption per currency, `CUR:max_amount:max_cumulative:max_count,...` (e.g. "
            "`JPY:3000:10000:5,EUR:30:100:5`)."
        )),
    Var("TRUSTED_PAYEE_EXEMPTION", "flag", False,
        shown='`false`',
        doc="Payments to a payee on the user's trusted list need no second factor."),
    Var("RECURRING_EXEMPTION", "flag", False,
        shown='`false`',
        doc=(
            "Recurring series (same amount, currency, payee) started by a full step-up need no second factor, once "
            "per 24 hours per series."
        )),
    Var("SPC_INSTRUMENT_ICON", "url", "",
        shown='a built-in card icon (`data:` URL)',
        doc="Its icon: an `https:` or `data:image/` URL."),
    Var("DEFAULT_LOCALE", "choice", "en", choices=("en", "ja"),
        shown='`en`',
        doc="`en` or `ja`: the language of a registration that sends no `locale` and no matching `Accept-Language`."),
    Var("AUDIENCE", "text", "authsvc",
        shown='`authsvc`',
        doc="JWT `aud`."),
    Var("FRONTEND_CLIENT_ID", "text", "frontend",
        shown='`frontend`',
        doc=(
            "JWT `client_id` (RFC 9068): the client id of the payment frontend (the app or web page that signs users "
            "in through this service; it is the one OAuth client of the user-facing API, registered by this setting)."
        )),
    Var("RP_NAME", "text", "authsvc",
        shown='`authsvc`',
        doc="WebAuthn relying-party name, TOTP issuer."),
    Var("REPORT_URL", "url", None,
        shown='`PUBLIC_URL/report?token={token}`',
        doc='"This wasn\'t me" link in notifications; by default the service\'s own report page.'),
    Var("EMAIL_FROM", "text", "authsvc <no-reply@localhost>",
        shown='`authsvc <no-reply@localhost>`',
        doc="The From: of every email."),
    Var("RATE_LIMIT_PREFIX", "text", "authsvc",
        shown='`authsvc`',
        doc="Key prefix of the rate-limit and failure-budget counters in a shared Redis (`AUTHSVC_REDIS_URL`)."),
    Var("METRICS_DIR", "path", None,
        shown='a private temporary directory',
        doc=(
            "Where workers write their samples (prometheus_client multiprocess mode); emptied at start, a dead "
            "worker's live gauges dropped."
        )),
    Var("MIGRATIONS_DIR", "path", str(_ROOT / "migrations"),
        shown='`./migrations` of the source tree',
        doc="Set when installed from a wheel (the Docker image sets `/app/migrations`)."),
    Var("SPC_INSTRUMENT_NAME", "text", None,
        shown='`AUTHSVC_RP_NAME`',
        doc="The instrument name the browser's Secure Payment Confirmation sheet shows."),
    Var("OPERATOR", "text", None, field="",
        shown='—',
        doc=(
            "CLI: the operator's name for the audit log's actor (e.g. when several people share an admin account). "
            "The OS user running the command is recorded next to it in every operator entry (`os_user`) whatever this"
            " says."
        )),
)


def markdown() -> str:
    """The README's configuration table."""
    lines = ["| Variable | Type | Default | Minimum | Notes |", "|---|---|---|---|---|"]
    for var in VARS:
        minimum = "" if var.minimum is None else str(var.minimum)
        lines.append(f"| `{PREFIX}{var.name}` | {var.type} | {var.shown_default()} | {minimum} | {var.doc} |")
    return "\n".join(lines) + "\n"
