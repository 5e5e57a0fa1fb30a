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


def test_per_ip_limits_count_an_ipv6_64_as_one_client(make_app, redis_settings):
    """Rotating addresses inside one /64 (every subscriber has a whole one) gets no fresh
    budget: 12 registrations and 12 resets from one /64 meet the 5-a-minute limits. Another
    /64 has its own budget. Over HTTP, with Redis."""
    import ipaddress

    app = make_app(redis_settings.replace(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),)))
    client = app.test_client()

    def from_(ip):
        return {"X-Forwarded-For": ip}

    registrations = [client.post("/v1/registrations", json={"email": f"v6-{i}@example.com", "phone": "+819012345678",
                                                            "password": "correct horse battery staple 42"},
                                 headers=from_(f"2001:db8:5:6::{i + 1:x}")).status_code for i in range(12)]
    assert registrations[:5] == [202] * 5 and set(registrations[5:]) == {429}, registrations
    resets = [client.post("/v1/password-resets", json={"email": f"v6-{i}@example.com"},
                          headers=from_(f"2001:db8:5:6:{i + 1:x}::1")).status_code for i in range(12)]
    assert resets[:5] == [202] * 5 and set(resets[5:]) == {429}, resets
    other = client.post("/v1/password-resets", json={"email": "v6-x@example.com"}, headers=from_("2001:db8:5:7::1"))
    assert other.status_code == 202
    # IPv4 keeps the address
    assert client.post("/v1/password-resets", json={"email": "v4@example.com"},
                       headers=from_("192.0.2.1")).status_code == 202


def test_passkey_sign_in_endpoints_are_limited_per_client(client, db):
    """Each options call stores a challenge: one address cannot fill the table."""
    statuses = [client.post("/v1/login/passkey/options", json={}).status_code for _ in range(32)]
    assert statuses[:30] == [200] * 30 and set(statuses[30:]) == {429}, statuses
    assert db.execute("SELECT count(*) FROM passkey_challenges").fetchone()[0] == 30
    bogus = {"challenge_id": "00000000-0000-4000-8000-000000000000",
             "credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
                            "response": {"clientDataJSON": "AAAA", "authenticatorData": "AAAA", "signature": "AAAA"}}}
    answers = [client.post("/v1/login/passkey", json=bogus).status_code for _ in range(31)]
    assert set(answers[:30]) <= {400, 401} and answers[30] == 429, answers
