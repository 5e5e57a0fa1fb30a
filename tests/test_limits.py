"""The per-IP limits table (api/limits.py): every entry names a real endpoint (a typo would
leave that endpoint unlimited), and endpoints outside it are never counted."""

from __future__ import annotations

from authsvc.api.limits import ENDPOINT_LIMITS


def test_every_limited_endpoint_exists(app):
    missing = sorted(set(ENDPOINT_LIMITS) - set(app.view_functions))
    assert missing == []


def test_an_endpoint_without_limits_is_never_counted_while_limited_ones_are(client):
    for _ in range(40):  # well past any limit in the table
        assert client.get("/.well-known/jwks.json").status_code == 200
    statuses = [client.post("/v1/registrations", json={"email": "x", "phone": "y", "password": "z"}).status_code
                for _ in range(6)]
    assert statuses[:5] == [400] * 5 and statuses[5] == 429
