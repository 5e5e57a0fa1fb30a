"""Signed webhook delivery: ``Authsvc-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request

from .. import errors


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookSender:
    def __init__(self, url: str, secret: str, *, timeout: float = 10) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout

    def send(self, event: dict) -> None:
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        req = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "authsvc-webhooks/1",
                "Authsvc-Signature": sign(self._secret, int(time.time()), body),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310 - operator-configured URL
                if not 200 <= resp.status < 300:
                    raise errors.DeliveryError(f"webhook answered {resp.status}")
        except urllib.error.HTTPError as exc:
            raise errors.DeliveryError(f"webhook answered {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise errors.DeliveryError(f"webhook unreachable: {type(exc).__name__}") from None
