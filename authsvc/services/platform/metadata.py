"""RFC 8414 authorization server metadata: how a stock OAuth/JOSE library discovers this service.

Rules:
- ``issuer`` is exactly the ``iss`` of the access tokens (``AUTHSVC_ISSUER``), so a client
  that discovers from the issuer URL and checks ``iss`` agrees with itself; endpoints are
  under ``AUTHSVC_PUBLIC_URL``;
- only what the service really offers is named: the JWKS, introspection with
  ``client_secret_basic`` (RFC 6749 2.3.1), ES256 access tokens (RFC 9068 ``at+jwt``). There
  is no OAuth authorization or token endpoint (users sign in through ``/v1/login``), so
  ``response_types_supported`` is empty and ``grant_types_supported`` is absent;
- ``access_token_signing_alg_values_supported`` is not IANA-registered (nothing standard names
  the access-token algorithm; RFC 9068 leaves it to the JWKS): the keys' ``alg`` says it too.
"""

from __future__ import annotations

from typing import Any

from ...config import Settings
from ...i18n import LOCALES
from ...security import tokens


def authorization_server_metadata(settings: Settings) -> dict[str, Any]:
    base = settings.public_url.rstrip("/")
    return {
        "issuer": settings.issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/v1/introspect",
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": [tokens.ALG],
        "service_documentation": f"{base}/openapi.yaml",
        "ui_locales_supported": list(LOCALES),
    }
