"""The production environment (``AUTHSVC_*`` variables) that describes a ``Settings``, for code
that starts the CLI or ``authsvc serve`` as an operator would (CLI tests, benchmarks)."""

from __future__ import annotations

import base64

from authsvc.config import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """Database, first encryption key, Twilio, SMTP, SMS countries and migrations of ``settings``."""
    kid, key = settings.encryption_keys[0]
    return {
        "AUTHSVC_DATABASE_URL": settings.database_url,
        "AUTHSVC_ENCRYPTION_KEY": f"{kid}:{base64.b64encode(key).decode()}",
        "AUTHSVC_SMS_PROVIDER": "twilio",
        "AUTHSVC_TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "AUTHSVC_TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "AUTHSVC_TWILIO_FROM": settings.twilio_from,
        "AUTHSVC_TWILIO_API_BASE": settings.twilio_api_base,
        "AUTHSVC_SMTP_URL": settings.smtp_url,
        "AUTHSVC_SMS_COUNTRIES": ",".join(settings.sms_countries),
        "AUTHSVC_MIGRATIONS_DIR": str(settings.migrations_dir),
    }
