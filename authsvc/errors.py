"""One exception family for the whole service.

Every layer raises these (``security`` and ``store`` translate library errors into them);
``api`` turns them into RFC 9457 problem documents in exactly one place
(:func:`authsvc.api.problems.register`). ``code`` values are part of the API
(docs/api-guide.md, "Conventions"; openapi.yaml).
"""

from __future__ import annotations

from typing import Any


class AuthsvcError(Exception):
    """Base of every error this service raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


# --- configuration (never reaches HTTP) -------------------------------------------------
class ConfigError(AuthsvcError):
    code = "config_error"
    title = "Invalid configuration"


# --- 400 ----------------------------------------------------------------------------------
class InvalidRequest(AuthsvcError):
    status = 400
    code = "invalid_request"
    title = "Invalid request"


class WeakPassword(InvalidRequest):
    code = "weak_password"
    title = "Password rejected"


class VerificationFailed(InvalidRequest):
    code = "verification_failed"
    title = "Verification failed"


class UnsupportedPhone(InvalidRequest):
    """The number cannot receive our SMS: not a mobile number, or outside AUTHSVC_SMS_COUNTRIES."""

    code = "unsupported_phone"
    title = "Phone number not supported"


class PayloadTooLarge(AuthsvcError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class RequestTimeout(AuthsvcError):
    """The client did not send its whole request within AUTHSVC_REQUEST_READ_TIMEOUT (answered by
    the HTTP front, authsvc/workers.py, before the app sees the request)."""

    status = 408
    code = "request_timeout"
    title = "Request timeout"


class RequestHeadTooLarge(AuthsvcError):
    """The request line and headers are larger than the HTTP front reads (authsvc/workers.py)."""

    status = 431
    code = "request_header_fields_too_large"
    title = "Request header fields too large"


class UnsupportedMediaType(AuthsvcError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


# --- 401 ----------------------------------------------------------------------------------
class Unauthenticated(AuthsvcError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault("WWW-Authenticate", 'Bearer realm="authsvc"')
        super().__init__(detail, **kw)


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    title = "Invalid credentials"


class InvalidFactor(Unauthenticated):
    code = "invalid_factor"
    title = "Second factor rejected"


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    title = "Invalid or expired token"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault(
            "WWW-Authenticate", 'Bearer realm="authsvc", error="invalid_token"'
        )
        super().__init__(detail, **kw)


class InvalidClient(Unauthenticated):
    """Client authentication failed. The problem document also carries RFC 6749 section 5.2's
    ``error`` (and ``error_description``), so stock OAuth clients read it as they expect."""

    code = "invalid_client"
    title = "Invalid client credentials"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault("WWW-Authenticate", 'Basic realm="authsvc"')
        extra = kw.setdefault("extra", {})
        extra.setdefault("error", "invalid_client")
        extra.setdefault("error_description", detail or self.title)
        super().__init__(detail, **kw)


class StepUpRequired(Unauthenticated):
    code = "step_up_required"
    title = "Step-up authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault(
            "WWW-Authenticate",
            'Bearer realm="authsvc", error="insufficient_user_authentication"',
        )
        super().__init__(detail, **kw)


class ReauthenticationRequired(Unauthenticated):
    """The session's sign-in (``auth_time``) is older than the action allows (RFC 9470
    ``max_age``): the user must sign in again with both factors; a step-up is not enough."""

    code = "reauthentication_required"
    title = "A more recent sign-in is required"

    def __init__(self, max_age: int, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {})["WWW-Authenticate"] = (
            f'Bearer realm="authsvc", error="insufficient_user_authentication", max_age="{int(max_age)}"'
        )
        kw.setdefault("extra", {})["max_age"] = int(max_age)
        super().__init__(detail, **kw)


# --- 403 ----------------------------------------------------------------------------------
class Forbidden(AuthsvcError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "Token scope does not allow this"


class AccountFrozen(Forbidden):
    code = "account_frozen"
    title = "Account frozen"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"
    title = "Password change required"


class PasswordResetRequired(Forbidden):
    code = "password_reset_required"
    title = "Password reset required"


# --- 404 / 409 ----------------------------------------------------------------------------
class NotFound(AuthsvcError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AuthsvcError):
    status = 409
    code = "conflict"
    title = "Conflict"


class LastFactor(Conflict):
    code = "last_factor"
    title = "The last second factor cannot be removed"


class PasskeyRequired(Conflict):
    """Password sign-in off needs a passkey (and recovery codes) to stay reachable."""

    code = "passkey_required"
    title = "A passkey and recovery codes are needed while password sign-in is off"


class TransactionMismatch(Conflict):
    code = "transaction_mismatch"
    title = "The step-up token was issued for another action or transaction"


class AlreadyRedeemed(Conflict):
    code = "already_redeemed"
    title = "The step-up token was already redeemed"


class CredentialExists(Conflict):
    code = "credential_exists"
    title = "This authenticator is already registered"


# --- 429 / 5xx ----------------------------------------------------------------------------
class RateLimited(AuthsvcError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None, **kw: Any) -> None:
        retry_after = max(1, int(retry_after))
        kw.setdefault("headers", {})["Retry-After"] = str(retry_after)
        super().__init__(detail, **kw)
        self.retry_after = retry_after


class StoreError(AuthsvcError):
    """A database failure that is not the caller's fault."""

    code = "storage_error"
    title = "Storage error"


class StoreUnavailable(StoreError):
    status = 503
    code = "unavailable"
    title = "Service temporarily unavailable"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault("Retry-After", "1")
        super().__init__(detail, **kw)


class SchemaNotCurrent(StoreUnavailable):
    """The database answers but lacks this version's tables or columns: its migrations were
    not applied (``authsvc db upgrade``). ``what`` is PostgreSQL's own words, for operators;
    clients see only the generic 503."""

    def __init__(self, what: str) -> None:
        super().__init__("database unavailable")
        self.what = what


class Busy(AuthsvcError):
    """Password hashing is saturated: this request would wait past its budget (shed at once)."""

    status = 503
    code = "busy"
    title = "Service busy"

    def __init__(self, retry_after: int, detail: str | None = None, **kw: Any) -> None:
        retry_after = max(1, int(retry_after))
        self.retry_after = retry_after
        kw.setdefault("headers", {})["Retry-After"] = str(retry_after)
        super().__init__(detail or "the service is busy; try again shortly", **kw)
        self.retry_after = retry_after


class UniqueViolation(StoreError):
    """Raised by the store when a unique constraint fails; ``constraint`` names it."""

    code = "conflict"

    def __init__(self, constraint: str | None, detail: str | None = None) -> None:
        super().__init__(detail or f"unique constraint {constraint} violated")
        self.constraint = constraint


class DeliveryError(AuthsvcError):
    """An SMS, email or webhook could not be handed to its provider (retried from the outbox)."""

    status = 502
    code = "delivery_failed"
    title = "Message delivery failed"


class SignCountRegression(InvalidFactor):
    """A WebAuthn authenticator reported a signature counter that did not grow (possible clone)."""

    code = "invalid_factor"


class DecryptionError(AuthsvcError):
    """Ciphertext could not be decrypted (unknown key id, tampered data or wrong key)."""

    code = "decryption_failed"
    title = "Stored secret could not be decrypted"
